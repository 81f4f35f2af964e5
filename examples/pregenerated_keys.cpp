// Pre-generated encryption keys: attest and encapsulate once (generate_encryption_keys), keep the
// keys (here: as the JSON `rvenc keygen` prints), and create clients that use them directly.
#include <boost/json/serialize.hpp>

#include "common.hpp"
#include "rvenc/client/client.hpp"

int main(int argc, char** argv) {
  rvenc::client::ClientOptions options = example_options();
  auto keys = rvenc::client::generate_encryption_keys(options);  // verifies the attestation first
  if (!keys) {
    std::cerr << keys.error().to_string() << "\n";
    return 1;
  }
  const std::string saved = keys->to_json();  // {"sharedSecret","cipherText","keyId"}: keep it secret

  auto restored = rvenc::client::EncryptionKeys::from_json(saved);
  if (!restored) return 1;
  options.encryption_keys = std::move(*restored);
  auto client = rvenc::client::create_client(options);
  if (!client) {
    std::cerr << client.error().to_string() << "\n";
    return 2;
  }
  const std::string model = argc > 1 ? argv[1] : "rvenc-demo";
  for (const char* prompt : {"What is 2 + 2?", "And 3 + 3?"}) {
    auto completion = client->chat.completions.create(hello_request(model, prompt));
    if (!completion) {
      std::cerr << completion.error().to_string() << "\n";
      return 1;
    }
    std::cout << prompt << " -> " << completion->at("choices").at(0).at("message").at("content").as_string().c_str() << "\n";
  }
}
