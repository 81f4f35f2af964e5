// The one Bearer parser and masker (common/auth.hpp): RFC 6750 section 2.1 with RFC 7235's token68.
#include <gtest/gtest.h>

#include "rvenc/common/auth.hpp"

namespace rvenc {
namespace {

TEST(Bearer, AcceptsTheRfcForms) {
  EXPECT_EQ(bearer_token("Bearer abc").value_or(""), "abc");
  EXPECT_EQ(bearer_token("bearer abc").value_or(""), "abc");
  EXPECT_EQ(bearer_token("BeArEr abc").value_or(""), "abc");
  EXPECT_EQ(bearer_token("Bearer   abc").value_or(""), "abc") << "1*SP";
  EXPECT_EQ(bearer_token(" \tBearer abc \t").value_or(""), "abc") << "field OWS is not part of the value";
  EXPECT_EQ(bearer_token("Bearer sk_live_A-b.c~d+e/f==").value_or(""), "sk_live_A-b.c~d+e/f==");
}

TEST(Bearer, RefusesEverythingElse) {
  for (const std::string_view refused :
       {"", "Bearer", "Bearer ", "Bearer  ", "Bearerabc", "Bearer\tabc", "Bearer \tabc", "Basic abc", "Bear abc",
        "Bearer a b", "Bearer abc\tx", "Bearer =abc", "Bearer abc=x", "Bearer abc,", "Bearer ab\"c", "Bearer abc;",
        "Bearer ab\x01" "c", "Bearer ab\x7f", "Bearer ab\xc3\xa9"}) {
    EXPECT_FALSE(bearer_token(refused)) << refused;
  }
}

TEST(Bearer, ViewPointsIntoTheHeader) {
  const std::string header = "Bearer token";
  const auto token = bearer_token(header);
  ASSERT_TRUE(token);
  EXPECT_EQ(token->data(), header.data() + 7);
}

TEST(Mask, ShowsOnlyTheLastFourCharacters) {
  EXPECT_EQ(mask_secret("sk_live_abcdefgh1234"), "…1234");
  EXPECT_EQ(mask_secret("1234"), "…");
  EXPECT_EQ(mask_secret(""), "…");
}

}  // namespace
}  // namespace rvenc
