// Must NOT type-check (tests/e2e/ts_client.sh expects tsc to fail here, and only here): `likes`
// is an integer in PostsUpdate. Proves the type-check can fail.
import createClient from "openapi-fetch";
import type { paths } from "../gen/openapi-typescript/schema.js";

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:1" });
await client.PATCH("/v1/collections/posts/records/{id}", {
  params: { path: { id: "0190c0de-0000-7000-8000-000000000000" } },
  body: { likes: "many" },
});
