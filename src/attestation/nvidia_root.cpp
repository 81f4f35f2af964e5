// The NVIDIA Device Identity CA pinned in the library (nvidia.hpp's nvidia_device_roots), copied
// from NVIDIA's published certificate (shared/attestation/nvidia/device_root.pem = nvtrust's
// verifier_device_root.pem). SHA-256 fingerprint for review:
//   NVIDIA Device Identity CA  102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48
#include "rvenc/attestation/nvidia.hpp"

namespace rvenc::attestation {
namespace {

constexpr std::string_view kNvidiaDeviceIdentityCa = R"(
-----BEGIN CERTIFICATE-----
MIICCzCCAZCgAwIBAgIQLTZwscoQBBHB/sDoKgZbVDAKBggqhkjOPQQDAzA1MSIw
IAYDVQQDDBlOVklESUEgRGV2aWNlIElkZW50aXR5IENBMQ8wDQYDVQQKDAZOVklE
SUEwIBcNMjExMTA1MDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMDUxIjAgBgNVBAMM
GU5WSURJQSBEZXZpY2UgSWRlbnRpdHkgQ0ExDzANBgNVBAoMBk5WSURJQTB2MBAG
ByqGSM49AgEGBSuBBAAiA2IABA5MFKM7+KViZljbQSlgfky/RRnEQScW9NDZF8SX
gAW96r6u/Ve8ZggtcYpPi2BS4VFu6KfEIrhN6FcHG7WP05W+oM+hxj7nyA1r1jkB
2Ry70YfThX3Ba1zOryOP+MJ9vaNjMGEwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAQYwHQYDVR0OBBYEFFeF/4PyY8xlfWi3Olv0jUrL+0lfMB8GA1UdIwQY
MBaAFFeF/4PyY8xlfWi3Olv0jUrL+0lfMAoGCCqGSM49BAMDA2kAMGYCMQCPeFM3
TASsKQVaT+8S0sO9u97PVGCpE9d/I42IT7k3UUOLSR/qvJynVOD1vQKVXf0CMQC+
EY55WYoDBvs2wPAH1Gw4LbcwUN8QCff8bFmV4ZxjCRr4WXTLFHBKjbfneGSBWwA=
-----END CERTIFICATE-----)";

}  // namespace

TrustAnchors nvidia_device_roots() { return TrustAnchors{{std::string(kNvidiaDeviceIdentityCa)}}; }

}  // namespace rvenc::attestation
