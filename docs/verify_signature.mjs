// The Addon-Signature header both ways (Node.js, no dependencies).
//
//   node verify_signature.mjs HEADER < body             # verify a request from the stack
//   node verify_signature.mjs --sign METHOD PATH < body  # sign your call to the stack
//
// PROVISIONER_SIGNING_SECRET in the environment. The stack signs "t.body" (its
// calls go to your one endpoint); your calls to the stack sign "t.METHOD.path.body",
// so a signature names the resource it is for (docs/provisioner.md, "The signature").
import { createHmac, timingSafeEqual } from "node:crypto";

export function verify(secret, header, body, toleranceSeconds = 300) {
  const fields = header.split(",").map((part) => part.trim().split("="));
  const timestamp = fields.find(([key]) => key === "t")?.[1] ?? "";
  if (!/^\d+$/.test(timestamp)) return false;
  const expected = createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest();
  const signed = fields
    .filter(([key, value]) => key === "v1" && /^[0-9a-f]{64}$/.test(value ?? ""))
    .some(([, value]) => timingSafeEqual(expected, Buffer.from(value, "hex")));
  return signed && Math.abs(Date.now() / 1000 - Number(timestamp)) <= toleranceSeconds;
}

// The header for your call to the stack, e.g. POST /vendor/resources/{id}/provisioned.
export function signCall(secret, method, path, body, timestamp = Math.floor(Date.now() / 1000)) {
  const mac = createHmac("sha256", secret)
    .update(`${timestamp}.${method.toUpperCase()}.${path}.`)
    .update(body)
    .digest("hex");
  return `t=${timestamp},v1=${mac}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const secret = process.env.PROVISIONER_SIGNING_SECRET;
  if (process.argv[2] === "--sign") {
    const at = process.env.SIGNATURE_TIME ? Number(process.env.SIGNATURE_TIME) : undefined;
    console.log(signCall(secret, process.argv[3], process.argv[4], Buffer.concat(chunks), at));
    process.exit(0);
  }
  const valid = verify(secret, process.argv[2], Buffer.concat(chunks));
  console.log(valid ? "valid" : "invalid");
  process.exit(valid ? 0 : 1);
}
