// Non-streaming: one encrypted request, the assembled chat.completion printed as JSON.
//   RVENC_API_KEY=sk_test_... ./rvenc_example_basic [MODEL]   (or next to `rvenc up`)
#include <boost/json/serialize.hpp>

#include "common.hpp"
#include "rvenc/client/client.hpp"

int main(int argc, char** argv) {
  auto client = example_client();
  const std::string model = argc > 1 ? argv[1] : "rvenc-demo";
  auto completion = client.chat.completions.create(hello_request(model, "Say hello in five words."));
  if (!completion) {
    // Typed errors: the code, and the gateway's HTTP status when it answered with one.
    std::cerr << completion.error().to_string() << " (HTTP " << completion.error().http_status << ")\n";
    return 1;
  }
  std::cout << boost::json::serialize(*completion) << "\n";
  std::cout << "answer: " << completion->at("choices").at(0).at("message").at("content").as_string().c_str() << "\n";
}
