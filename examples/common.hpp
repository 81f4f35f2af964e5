// Settings every example shares: the gateway and key from the environment, or from the
// .rvenc/stack.json that `rvenc up` writes (so the examples run next to a local stack).
#pragma once

#include <cstdlib>
#include <iostream>

#include "rvenc/client/client.hpp"
#include "rvenc/client/settings.hpp"

inline rvenc::client::ClientOptions example_options() {
  rvenc::client::ClientSettings settings;
  if (const char* url = std::getenv("RVENC_GATEWAY_URL")) settings.gateway = url;
  if (const char* key = std::getenv("RVENC_API_KEY")) settings.api_key = key;
  if (const char* platform = std::getenv("RVENC_PLATFORM_PUBLIC_KEY")) settings.platform_public_key = platform;
  auto options = rvenc::client::resolve_settings(settings);
  if (!options) {
    std::cerr << options.error().to_string() << "\n";
    std::exit(2);
  }
  return *options;
}

// A client for example_options(); exits with the reason when the options are not valid.
inline rvenc::client::Client example_client() {
  auto client = rvenc::client::create_client(example_options());
  if (!client) {
    std::cerr << client.error().to_string() << "\n";
    std::exit(2);
  }
  return std::move(*client);
}

inline boost::json::object hello_request(std::string_view model, std::string_view prompt) {
  return {{"model", model},
          {"messages", boost::json::array{boost::json::object{{"role", "user"}, {"content", prompt}}}}};
}
