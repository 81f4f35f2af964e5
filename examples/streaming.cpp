// Streaming: each decrypted chat.completion.chunk as it arrives, with the rate-limit headers the
// gateway sent. The stream only counts as complete after its authenticated end.
#include "common.hpp"
#include "rvenc/client/client.hpp"

int main(int argc, char** argv) {
  auto client = example_client();
  const std::string model = argc > 1 ? argv[1] : "rvenc-demo";
  rvenc::client::CallOptions call;
  call.on_response = [](const rvenc::client::ResponseMeta& meta) {
    if (auto remaining = meta.header("x-ratelimit-remaining-requests")) std::cerr << "requests left: " << *remaining << "\n";
  };
  auto done = client.chat.completions.create(
      hello_request(model, "Count from one to ten."),
      [](const rvenc::client::Chunk& chunk) -> rvenc::Status {
        const auto& delta = chunk.object.at("choices").at(0).at("delta").as_object();
        if (const auto* content = delta.if_contains("content"); content && content->is_string())
          std::cout << content->as_string().c_str() << std::flush;
        return {};
      },
      call);
  std::cout << "\n";
  if (!done) {
    std::cerr << done.error().to_string() << "\n";
    return 1;
  }
}
