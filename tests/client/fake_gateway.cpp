#include "fake_gateway.hpp"

#include <chrono>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace rvenc::test {

namespace asio = boost::asio;
namespace json = boost::json;
using http::awaitable;

namespace {
crypto::Ed25519KeyPair random_ed25519() {
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  return crypto::ed25519_keypair_from_seed(seed);
}

std::int64_t now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string chunk_json(const json::object& delta, std::string_view finish_reason) {
  json::object choice{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (!finish_reason.empty()) choice["finish_reason"] = finish_reason;
  return json::serialize(json::object{{"id", "chatcmpl-test"},
                                      {"object", "chat.completion.chunk"},
                                      {"created", 1764004858},
                                      {"model", "demo"},
                                      {"choices", json::array{choice}},
                                      {"usage", nullptr}});
}

std::vector<std::string> FakeGateway::sealed(protocol::ResponseSealer& sealer, const std::vector<std::string>& chunks) {
  std::vector<std::string> pieces;
  for (const auto& chunk : chunks) pieces.push_back(sealer.seal_event(protocol::EventKind::data, chunk));
  pieces.push_back(sealer.seal_event(protocol::EventKind::done, "[DONE]"));
  return pieces;
}

FakeGateway::FakeGateway()
    : enclave_key_(crypto::xwing_generate_keypair()), platform_(random_ed25519()), other_platform_(random_ed25519()) {
  const auto digest = crypto::sha256(crypto::as_bytes("fake enclave binary"));
  measurement_.assign(digest.begin(), digest.end());
  script_ = [](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = sealed(sealer, {chunk_json({{"role", "assistant"}, {"content", "ok"}}, "stop")})};
  };

  http::Router router;
  router.get("/rvenc/attestation",
             [this](http::Request& request, http::ResponseWriter& writer) { return attestation(request, writer); });
  router.post("/rvenc/chat/completions",
              [this](http::Request& request, http::ResponseWriter& writer) { return chat(request, writer); });
  router.get("/rvenc/models", [](http::Request&, http::ResponseWriter& writer) -> awaitable<void> {
    co_await writer.send(http::json_response(
        200, R"({"object":"list","data":[{"id":"demo","object":"model","owned_by":"rvenc"}]})"));
  });
  auto server = http::Server::create(http::ServerOptions{}, router);
  if (!server) throw std::runtime_error(server.error().to_string());
  server_ = std::move(*server);
  hold_ = std::make_unique<asio::steady_timer>(server_->executor(), asio::steady_timer::time_point::max());
  server_->start();
}

FakeGateway::~FakeGateway() {
  stopping_ = true;
  release();
  server_->stop(std::chrono::milliseconds(0));
  server_->wait();
  // The timer must go before the server's io_context it was created on.
  hold_.reset();
}

crypto::KeyId FakeGateway::key_id() const {
  const std::lock_guard lock(mutex_);
  return crypto::key_id(enclave_key_.public_key);
}

void FakeGateway::set_script(Script script) {
  const std::lock_guard lock(mutex_);
  script_ = std::move(script);
}

void FakeGateway::rotate_key() {
  const std::lock_guard lock(mutex_);
  enclave_key_ = crypto::xwing_generate_keypair();
}

void FakeGateway::release() {
  asio::post(server_->executor(), [hold = hold_.get()] { hold->cancel(); });
}

json::object FakeGateway::last_request() const {
  const std::lock_guard lock(mutex_);
  return last_request_;
}

awaitable<void> FakeGateway::attestation(http::Request& request, http::ResponseWriter& writer) {
  ++attestation_requests;
  if (attestation_hangs_) {
    co_await hold_->async_wait(asio::as_tuple(asio::use_awaitable));
    co_return;
  }
  const std::string_view query = http::target_query(request);
  constexpr std::string_view kPrefix = "challenge=";
  auto challenge = query.starts_with(kPrefix)
                       ? from_hex_exact<protocol::kChallengeBytes>(query.substr(kPrefix.size()), "challenge")
                       : std::unexpected(Error{Errc::invalid_request, "challenge is required"});
  if (!challenge) {
    co_await writer.send(http::error_response(request, challenge.error()));
    co_return;
  }
  const AttestationFlaw flaw = flaw_;
  if (flaw == AttestationFlaw::bad_binding) (*challenge)[0] ^= 0x01;

  protocol::AttestationDocument doc;
  {
    const std::lock_guard lock(mutex_);
    doc.public_key = enclave_key_.public_key;
  }
  doc.key_id = crypto::key_id(doc.public_key);
  if (flaw == AttestationFlaw::wrong_key_id) doc.key_id[0] ^= 0x01;
  doc.not_after = now() + key_lifetime_;
  doc.provider = "simulated";
  doc.report_data = protocol::report_data(doc.public_key, *challenge);
  doc.measurement = measurement_;
  const auto signature = crypto::ed25519_sign(flaw == AttestationFlaw::other_platform_key ? other_platform_ : platform_,
                                              protocol::simulated_signed_message(doc));
  doc.evidence.assign(signature.begin(), signature.end());
  co_await writer.send(http::json_response(200, protocol::serialize_attestation(doc)));
}

awaitable<void> FakeGateway::chat(http::Request& request, http::ResponseWriter& writer) {
  ++chat_requests;
  if (request[http::beast::http::field::authorization] != "Bearer " + std::string(kApiKey)) {
    co_await writer.send(http::error_response(request, Error{Errc::invalid_api_key, "invalid API key"}));
    co_return;
  }
  auto envelope = protocol::parse_envelope(request.body());
  if (!envelope) {
    co_await writer.send(http::error_response(request, envelope.error()));
    co_return;
  }
  crypto::XWingSeed seed;
  Script script;
  bool known_key = true;
  {
    const std::lock_guard lock(mutex_);
    known_key = envelope->version == protocol::Version::v1 || envelope->key_id == crypto::key_id(enclave_key_.public_key);
    seed = enclave_key_.seed;
    script = script_;
  }
  if (!known_key) {
    co_await writer.send(http::error_response(request, Error{Errc::unknown_key_id, "unknown keyId"}));
    co_return;
  }
  auto shared = crypto::xwing_decapsulate(envelope->cipher_text, seed);
  auto plaintext = shared ? protocol::open_request(*envelope, *shared) : std::unexpected(shared.error());
  auto chat_request = plaintext ? protocol::validate_chat_request(plaintext->view()) : std::unexpected(plaintext.error());
  if (!chat_request) {
    co_await writer.send(http::error_response(request, chat_request.error()));
    co_return;
  }
  {
    const std::lock_guard lock(mutex_);
    last_request_ = chat_request->body;
  }

  protocol::ResponseSealer sealer(envelope->version, *shared, envelope->nonce);
  Reply reply = script(sealer, *chat_request);
  if (reply.hang) {
    co_await hold_->async_wait(asio::as_tuple(asio::use_awaitable));
    co_return;  // the handler gives up without answering: the connection closes
  }
  if (reply.error) {
    co_await writer.send(std::move(*reply.error));
    co_return;
  }
  if (!co_await writer.begin_stream(http::event_stream_header())) co_return;
  // Version 3: the response salt first, as the enclave sends it (the script seals with it).
  if (const std::string init = sealer.init_event(); !init.empty() && !co_await writer.write(init)) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto pause = [&](std::chrono::milliseconds interval) -> awaitable<bool> {
    timer.expires_after(interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return !stopping_;
  };
  for (std::size_t i = 0; i < reply.pieces.size(); ++i) {
    if (i > 0 && reply.piece_interval.count() > 0 && !co_await pause(reply.piece_interval)) co_return;
    if (!co_await writer.write(reply.pieces[i])) co_return;
  }
  for (const auto until = std::chrono::steady_clock::now() + reply.trickle_for; std::chrono::steady_clock::now() < until;)
    if (!co_await pause(reply.trickle_interval) || !co_await writer.write(reply.trickle)) co_return;
  // The server closes the connection of a handler that throws mid-stream.
  if (reply.cut) throw std::runtime_error("fake gateway: connection cut on purpose");
  co_await writer.end_stream();
}

}  // namespace rvenc::test
