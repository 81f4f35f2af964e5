// UTF-8 well-formedness (common/utf8.hpp) and the JSON error messages that use it.
#include <gtest/gtest.h>

#include "rvenc/common/utf8.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace rvenc {
namespace {

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_FALSE(utf8::first_invalid("").has_value());
  EXPECT_FALSE(utf8::first_invalid("plain ascii").has_value());
  EXPECT_FALSE(utf8::first_invalid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80").has_value());  // é € 😀
}

TEST(Utf8, FindsTheFirstBadByte) {
  EXPECT_EQ(utf8::first_invalid("caf\xe9!"), 3U);               // Latin-1 é
  EXPECT_EQ(utf8::first_invalid("ab\xc0\xaf"), 2U);              // overlong '/'
  EXPECT_EQ(utf8::first_invalid("x\xed\xa0\x80"), 1U);           // a surrogate
  EXPECT_EQ(utf8::first_invalid("\xf4\x90\x80\x80"), 0U);        // above U+10FFFF
  EXPECT_EQ(utf8::first_invalid("ok\xe2\x82"), 2U);              // cut at the end
  EXPECT_EQ(utf8::first_invalid("\x80"), 0U);                    // a lone continuation byte
  EXPECT_EQ(utf8::first_invalid("\xe2\x28\xa1"), 0U);            // a bad second byte
}

// Before: a Latin-1 prompt was reported as "not valid JSON", which sends the user looking for a
// syntax error that is not there.
TEST(Utf8, JsonErrorsSayWhenTheTextIsNotUtf8) {
  const auto chat = protocol::validate_chat_request(
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}");
  ASSERT_FALSE(chat);
  EXPECT_NE(chat.error().message.find("not valid UTF-8 (byte 54)"), std::string::npos) << chat.error().message;

  const auto envelope = protocol::parse_envelope("{\"nonce\":\"\xff\"}");
  ASSERT_FALSE(envelope);
  EXPECT_NE(envelope.error().message.find("request body is not valid UTF-8"), std::string::npos)
      << envelope.error().message;

  const auto syntax = protocol::validate_chat_request("{\"model\":");
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.error().message.find("UTF-8"), std::string::npos) << syntax.error().message;
  EXPECT_NE(syntax.error().message.find("not valid JSON"), std::string::npos) << syntax.error().message;
}

}  // namespace
}  // namespace rvenc
