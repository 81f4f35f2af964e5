// The one query splitter and %XX decoder (common/query.hpp) that the attestation routes use.
#include <gtest/gtest.h>

#include "rvenc/common/query.hpp"

namespace rvenc {
namespace {

TEST(Query, SplitsPairsInOrderWithoutDecoding) {
  const auto parameters = split_query("challenge=ab&&model=a%2Fb&all&=x");
  ASSERT_EQ(parameters.size(), 4U);
  EXPECT_EQ(parameters[0].key, "challenge");
  EXPECT_EQ(parameters[0].value, "ab");
  EXPECT_EQ(parameters[1].key, "model");
  EXPECT_EQ(parameters[1].value, "a%2Fb");
  EXPECT_EQ(parameters[2].key, "all");
  EXPECT_EQ(parameters[2].value, "");
  EXPECT_EQ(parameters[3].key, "");
  EXPECT_EQ(parameters[3].value, "x");
  EXPECT_TRUE(split_query("").empty());
  EXPECT_TRUE(split_query("&&").empty());
}

TEST(Query, PercentDecodesAndNamesTheParameterOfABadEscape) {
  EXPECT_EQ(percent_decode("a%2Fb+c%41", "model").value(), "a/b+cA");
  for (const std::string_view bad : {"%", "%4", "%zz", "abc%g1"}) {
    const auto decoded = percent_decode(bad, "model");
    ASSERT_FALSE(decoded) << bad;
    EXPECT_EQ(decoded.error().code, Errc::invalid_request);
    EXPECT_NE(decoded.error().message.find("model query parameter"), std::string::npos);
  }
}

}  // namespace
}  // namespace rvenc
