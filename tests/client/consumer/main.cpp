// Builds against the installed SDK and checks that options are validated without a server.
#include <iostream>

#include "rvenc/client/client.hpp"

int main() {
  if (rvenc::client::create_client({}).has_value()) return 1;  // api_key is required
  auto client = rvenc::client::create_client({.api_key = "sk_test_consumer"});
  if (!client) return 1;
  std::cout << "consumer ok: " << client->options().base_url << "\n";
  return 0;
}
