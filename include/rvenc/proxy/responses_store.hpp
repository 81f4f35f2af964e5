// The local proxy's Responses API state (issue 26): responses created with `store` (OpenAI's
// default) are kept here, on the user's machine, so that `previous_response_id`,
// GET /v1/responses/{id} and DELETE /v1/responses/{id} work while the enclave and the operator
// keep nothing (docs/responses.md, "Where state lives").
//
// Design: memory only, bounded by a count and a byte cap (the oldest entries go first), scoped
// per API key (a keyed fingerprint of it, never the key): one key never reads another's
// conversations. A follow-up's previous_response_id is expanded here into the input items sent
// (the stored conversation's items, then its output), so the sealed request is self-contained.
// Nothing is written to disk: a restart forgets every conversation (as `store: false` would).
#pragma once

#include <cstddef>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::proxy {

struct ResponsesStoreOptions {
  static constexpr std::size_t kDefaultMaxEntries = 1000;
  static constexpr std::size_t kDefaultMaxBytes = 64ULL * 1024 * 1024;
  std::size_t max_entries = kDefaultMaxEntries;  // --responses-max; 0 disables storing
  std::size_t max_bytes = kDefaultMaxBytes;      // --responses-max-bytes (JSON text of input + response)
};

class ResponsesStore {
 public:
  explicit ResponsesStore(ResponsesStoreOptions options = {}) : options_(options) {}

  // The owner of entries made with this API key.
  [[nodiscard]] static crypto::Fingerprint owner_of(std::string_view api_key) noexcept;

  // Keeps `response` (its "id") with the input items that produced it. An entry larger than the
  // byte cap is not kept (false); older entries are dropped to make room.
  bool put(const crypto::Fingerprint& owner, boost::json::array input, boost::json::object response);
  [[nodiscard]] const boost::json::object* find(const crypto::Fingerprint& owner, std::string_view id) const;
  bool erase(const crypto::Fingerprint& owner, std::string_view id);
  // The conversation up to and including response `id`: its input items, then its output as
  // input items. invalid_request (400) when this key has no such response (never stored, dropped, or
  // another key's).
  [[nodiscard]] Result<boost::json::array> conversation(const crypto::Fingerprint& owner, std::string_view id) const;

  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

 private:
  struct Entry {
    boost::json::array input;
    boost::json::object response;
    std::size_t bytes = 0;
  };
  using Key = std::pair<crypto::Fingerprint, std::string>;
  void drop_oldest();

  ResponsesStoreOptions options_;
  std::map<Key, Entry> entries_;
  std::list<Key> order_;  // oldest first
  std::size_t bytes_ = 0;
};

// An incoming POST /v1/responses as the proxy forwards it.
struct PreparedResponses {
  std::string model;
  bool stream = false;
  bool store = true;                           // OpenAI's default
  boost::json::value previous_response_id;     // as given (null when none)
  boost::json::array input;                    // the whole conversation sent (kept with the answer)
  boost::json::object body;                    // what is sealed: store false, no previous_response_id
};

// Parses the body, expands previous_response_id from `store` (this owner's entries) into the
// input items, and checks the result as the enclave will (protocol::translate_responses_request),
// so that bad input is refused before anything is sealed. invalid_request for a body that is not
// a JSON object or an unknown previous_response_id; invalid_inference naming the field otherwise.
[[nodiscard]] Result<PreparedResponses> prepare_responses_request(std::string_view body, const ResponsesStore& store,
                                                                  const crypto::Fingerprint& owner);
// Puts back what the caller asked for into a response object the enclave made: its store flag
// and previous_response_id.
void restore_request_fields(boost::json::object& response, const PreparedResponses& request);

}  // namespace rvenc::proxy
