#include "fake_gateway.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
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

FakeGateway::FakeGateway() : platform_(random_ed25519()), other_platform_(random_ed25519()) {
  enclaves_.push_back(Enclave{.key = crypto::xwing_generate_keypair()});
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
  router.get("/rvenc/models", [this](http::Request&, http::ResponseWriter& writer) -> awaitable<void> {
    ++models_requests;
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

crypto::KeyId FakeGateway::key_id() const { return replica_key_id(0); }

std::size_t FakeGateway::add_replica(std::vector<std::string> models) {
  const std::lock_guard lock(mutex_);
  if (!replicas_) enclaves_[0].models = {"demo"};
  replicas_ = true;
  enclaves_.push_back(Enclave{.key = crypto::xwing_generate_keypair(), .models = std::move(models)});
  return enclaves_.size() - 1;
}

void FakeGateway::fail_replica(std::size_t index, Errc code, int times) {
  const std::lock_guard lock(mutex_);
  enclaves_.at(index).fail_code = code;
  enclaves_.at(index).fail_times = times;
}

void FakeGateway::set_replica_down(std::size_t index, bool down) {
  const std::lock_guard lock(mutex_);
  enclaves_.at(index).down = down;
}

int FakeGateway::replica_requests(std::size_t index) const {
  const std::lock_guard lock(mutex_);
  return enclaves_.at(index).requests;
}

crypto::KeyId FakeGateway::replica_key_id(std::size_t index) const {
  const std::lock_guard lock(mutex_);
  return crypto::key_id(enclaves_.at(index).key.public_key);
}

FakeGateway::Enclave* FakeGateway::enclave_of(const crypto::KeyId& key_id) {
  for (auto& enclave : enclaves_)
    if (crypto::key_id(enclave.key.public_key) == key_id) return &enclave;
  return nullptr;
}

void FakeGateway::set_script(Script script) {
  const std::lock_guard lock(mutex_);
  script_ = std::move(script);
}

void FakeGateway::rotate_key() {
  const std::lock_guard lock(mutex_);
  enclaves_[0].key = crypto::xwing_generate_keypair();
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
  std::string_view query = http::target_query(request);
  std::optional<std::string> model;
  bool all = false;
  while (!query.empty()) {  // challenge=…&model=…&all=1 (names only percent-free in these tests)
    const std::string_view pair = query.substr(0, query.find('&'));
    if (pair.starts_with("model=")) model = std::string(pair.substr(6));
    if (pair == "all=1") all = true;
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
  }
  auto challenge = protocol::challenge_from_query(http::target_query(request));
  if (!challenge) {
    co_await writer.send(http::error_response(request, challenge.error()));
    co_return;
  }
  json::array documents;
  {
    const std::lock_guard lock(mutex_);
    for (const auto& enclave : enclaves_) {
      if (replicas_ && (enclave.down || (model && std::find(enclave.models.begin(), enclave.models.end(), *model) ==
                                                        enclave.models.end())))
        continue;
      documents.push_back(document(enclave, *challenge));
      if (!replicas_) break;  // a gateway of older releases: one enclave's document
    }
  }
  if (documents.empty()) {
    co_await writer.send(http::error_response(request, Error{Errc::model_not_found, "no enclave serves the model"}));
    co_return;
  }
  const std::string body = replicas_ && all ? json::serialize(json::object{{"enclaves", documents}})
                                            : json::serialize(documents.front());
  co_await writer.send(http::json_response(200, body));
}

json::value FakeGateway::document(const Enclave& enclave, protocol::Challenge challenge) const {
  const AttestationFlaw flaw = flaw_;
  if (flaw == AttestationFlaw::bad_binding) challenge[0] ^= 0x01;
  protocol::AttestationDocument doc;
  doc.public_key = enclave.key.public_key;
  doc.key_id = crypto::key_id(doc.public_key);
  if (flaw == AttestationFlaw::wrong_key_id) doc.key_id[0] ^= 0x01;
  doc.not_after = now() + key_lifetime_;
  doc.provider = "simulated";
  doc.binding = protocol::kCurrentBinding;
  doc.report_data = protocol::expected_report_data(doc, challenge);
  doc.measurement = measurement_;
  const auto signature = crypto::ed25519_sign(flaw == AttestationFlaw::other_platform_key ? other_platform_ : platform_,
                                              protocol::simulated_signed_message(doc));
  doc.evidence.assign(signature.begin(), signature.end());
  json::value value = json::parse(protocol::serialize_attestation(doc));
  if (replicas_) {
    value.as_object()["models"] = json::array(enclave.models.begin(), enclave.models.end());
    value.as_object()["capacity"] = nullptr;
    value.as_object()["previousKeys"] = json::array();
  }
  return value;
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
  std::optional<Error> refused;
  std::vector<std::string> models;
  {
    const std::lock_guard lock(mutex_);
    Enclave* enclave = envelope->version == protocol::Version::v1 ? &enclaves_[0] : enclave_of(envelope->key_id);
    if (enclave == nullptr) {
      refused = Error{Errc::unknown_key_id, "unknown keyId"};
    } else if (enclave->down) {
      refused = Error{Errc::enclave_unavailable, "the enclave holding this key is down"};
    } else if (enclave->fail_times > 0) {
      --enclave->fail_times;
      ++enclave->requests;
      refused = Error{enclave->fail_code, "scripted failure"};
    } else {
      ++enclave->requests;
      seed = enclave->key.seed;
      models = enclave->models;
    }
    script = script_;
  }
  if (refused) {
    auto response = http::error_response(request, *refused);
    if (refused->code == Errc::enclave_busy) response.set(http::beast::http::field::retry_after, "1");
    co_await writer.send(std::move(response));
    co_return;
  }
  auto shared = crypto::xwing_decapsulate(envelope->cipher_text, seed);
  auto plaintext = shared ? protocol::open_request(*envelope, *shared) : std::unexpected(shared.error());
  auto chat_request = plaintext ? protocol::validate_chat_request(plaintext->view()) : std::unexpected(plaintext.error());
  if (!chat_request) {
    co_await writer.send(http::error_response(request, chat_request.error()));
    co_return;
  }
  if (!models.empty() && std::find(models.begin(), models.end(), chat_request->model) == models.end()) {
    co_await writer.send(http::error_response(
        request, Error{Errc::invalid_inference, "the requested model is not served by this enclave"}));
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
