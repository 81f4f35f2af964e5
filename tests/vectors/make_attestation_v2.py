#!/usr/bin/env python3
"""Makes attestation_v2.json: the binding-2 reportData of docs/key-rotation.md, computed here with
Python's hashlib alone (independent of the C++ core and the TypeScript SDK that must reproduce it).

reportData = SHA-512("rvenc-attest-v2" || keyId || publicKey || u64be(notAfter) || challenge),
keyId = SHA-256(publicKey)[:8]. The public keys and challenges are those of the shared
../shared/vectors/attestation.json (whose binding-1 reportData each case repeats), so one case
shows both bindings of one key. Run: python3 tests/vectors/make_attestation_v2.py
"""
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "vectors", "attestation.json")
NOT_AFTERS = [0, 1790000000, 4102444800, 2**53 - 1]


def v2(public_key: bytes, not_after: int, challenge: bytes) -> bytes:
    key_id = hashlib.sha256(public_key).digest()[:8]
    return hashlib.sha512(b"rvenc-attest-v2" + key_id + public_key + not_after.to_bytes(8, "big") + challenge).digest()


def main() -> None:
    with open(SHARED) as f:
        shared = json.load(f)["cases"]
    cases = []
    for i, c in enumerate(shared):
        pk, ch = bytes.fromhex(c["publicKey"]), bytes.fromhex(c["challenge"])
        not_after = NOT_AFTERS[i % len(NOT_AFTERS)]
        for na in sorted({not_after, NOT_AFTERS[-1]}):
            cases.append({
                "publicKey": c["publicKey"], "keyId": hashlib.sha256(pk).digest()[:8].hex(), "notAfter": na,
                "challenge": c["challenge"], "reportDataV1": c["reportData"], "reportData": v2(pk, na, ch).hex(),
            })
    out = {
        "description": "Attestation binding 2 (docs/key-rotation.md): reportData = SHA-512(\"rvenc-attest-v2\" || keyId "
                       "|| publicKey || u64be(notAfter) || challenge); reportDataV1 is the shared binding-1 value of "
                       "the same key and challenge. Made by make_attestation_v2.py (Python hashlib).",
        "cases": cases,
    }
    with open(os.path.join(HERE, "attestation_v2.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
