// The client's rvenc-mux/1 stream table (src/http/mux_streams.hpp) without a server: numbering,
// the frames a server may and may not send, expiry, trailers after this side's RESET, failing all;
// and its frame writer's queue (src/http/mux_outbox.hpp): one flush, one send, per batch.
#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "http/mux_outbox.hpp"
#include "http/mux_streams.hpp"

namespace rvenc::http::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kHeadLimit = 8 * 1024;
constexpr std::string_view kHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";

class MuxStreamsTest : public ::testing::Test {
 protected:
  std::shared_ptr<MuxStream> open_stream() {
    auto stream = std::make_shared<MuxStream>(io_.get_executor());
    table_.add(stream, now_);
    return stream;
  }

  std::optional<Error> receive(mux::FrameType type, std::uint32_t id, std::string_view payload = {}) {
    return table_.receive(mux::Frame{type, id, payload}, now_, wake_);
  }

  boost::asio::io_context io_;
  MuxStreamTable table_{"enclave.test:8443", kHeadLimit};
  MuxClock::time_point now_ = MuxClock::now();
  MuxWakeList wake_;
};

TEST_F(MuxStreamsTest, NumbersStreamsWithOddIdsAndHoldsThem) {
  EXPECT_TRUE(table_.empty());
  const auto first = open_stream();
  const auto second = open_stream();
  EXPECT_EQ(first->id, 1u);
  EXPECT_EQ(second->id, 3u);
  EXPECT_EQ(table_.size(), 2u);
  EXPECT_TRUE(table_.has_room());
  EXPECT_TRUE(table_.contains(3));
  EXPECT_TRUE(table_.erase(3));
  EXPECT_FALSE(table_.erase(3));
  EXPECT_FALSE(table_.contains(3));
}

TEST_F(MuxStreamsTest, HasNoRoomBeyondTheStreamLimit) {
  for (std::size_t i = 0; i < mux::kMaxStreams; ++i) open_stream();
  EXPECT_FALSE(table_.has_room());
}

TEST_F(MuxStreamsTest, AppliesHeadDataAndEndAndWakesTheWaitingReader) {
  const auto s = open_stream();
  s->waiting = true;
  EXPECT_FALSE(receive(mux::FrameType::head, s->id, kHead));
  ASSERT_TRUE(s->headed);
  ASSERT_TRUE(s->header);
  EXPECT_EQ(s->header->result_int(), 200);
  ASSERT_EQ(wake_.size(), 1u);
  EXPECT_FALSE(s->waiting);
  EXPECT_FALSE(receive(mux::FrameType::data, s->id, "chunk"));
  EXPECT_EQ(s->received, "chunk");
  EXPECT_FALSE(receive(mux::FrameType::end, s->id));
  EXPECT_TRUE(s->ended);
  EXPECT_FALSE(s->error);
  EXPECT_FALSE(table_.contains(s->id));  // complete: it leaves the table
}

TEST_F(MuxStreamsTest, DropsFramesForStreamsItDoesNotHold) {
  EXPECT_FALSE(receive(mux::FrameType::data, 7, "late"));
  EXPECT_FALSE(receive(mux::FrameType::request, 9, "anything"));
  EXPECT_TRUE(wake_.empty());
}

TEST_F(MuxStreamsTest, ProtocolViolationsAreErrorsNamingTheServer) {
  const auto s = open_stream();
  auto early = receive(mux::FrameType::data, s->id, "x");
  ASSERT_TRUE(early);
  EXPECT_EQ(early->code, Errc::upstream_error);
  EXPECT_NE(early->message.find("enclave.test:8443"), std::string::npos);
  EXPECT_TRUE(receive(mux::FrameType::end, s->id));  // END before HEAD
  EXPECT_TRUE(receive(mux::FrameType::head, s->id, "not a response head"));
  EXPECT_TRUE(receive(mux::FrameType::request, s->id, "GET / HTTP/1.1\r\n\r\n"));  // only a client sends it
  EXPECT_TRUE(receive(mux::FrameType::trailer, s->id, "{}"));                      // for a live stream
  EXPECT_FALSE(receive(mux::FrameType::head, s->id, kHead));
  EXPECT_TRUE(receive(mux::FrameType::head, s->id, kHead));  // twice
  const std::string beyond(kMuxMaxUnread + 1, 'a');
  EXPECT_TRUE(receive(mux::FrameType::data, s->id, beyond));
  EXPECT_TRUE(s->received.empty());
}

TEST_F(MuxStreamsTest, ServerResetFailsTheStreamWithItsReason) {
  const auto s = open_stream();
  EXPECT_FALSE(receive(mux::FrameType::reset, s->id, "handler failed"));
  ASSERT_TRUE(s->error);
  EXPECT_NE(s->error->message.find("reset the stream: handler failed"), std::string::npos);
  EXPECT_FALSE(table_.contains(s->id));
}

TEST_F(MuxStreamsTest, ExpiresIdleAndOverdueStreamsWithAReset) {
  const auto quiet = open_stream();
  quiet->idle = 50ms;
  quiet->waiting = true;
  const auto overdue = open_stream();
  overdue->total_end = now_ + 10ms;
  const auto patient = open_stream();  // not waiting: its silence is not counted
  patient->idle = 50ms;
  std::string out;
  table_.expire(now_ + 20ms, out, wake_);
  ASSERT_TRUE(overdue->error);
  EXPECT_EQ(overdue->error->code, Errc::upstream_timeout);
  EXPECT_FALSE(quiet->error);
  table_.expire(now_ + 60ms, out, wake_);
  ASSERT_TRUE(quiet->error);
  EXPECT_EQ(quiet->error->code, Errc::upstream_timeout);
  ASSERT_EQ(wake_.size(), 1u);
  EXPECT_EQ(wake_.front(), quiet);
  EXPECT_FALSE(patient->error);
  EXPECT_EQ(table_.size(), 1u);
  // One RESET "timeout" per expired stream, overdue's first.
  auto first = mux::next_frame(out, mux::kMaxDataPayload);
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((*first)->type, mux::FrameType::reset);
  EXPECT_EQ((*first)->stream, overdue->id);
  EXPECT_EQ((*first)->payload, "timeout");
  auto second = mux::next_frame(std::string_view(out).substr((*first)->size()), mux::kMaxDataPayload);
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((*second)->stream, quiet->id);
}

TEST_F(MuxStreamsTest, AfterThisSidesResetOnlyTheTrailerOrAResetCounts) {
  const auto s = open_stream();
  EXPECT_FALSE(receive(mux::FrameType::head, s->id, kHead));
  table_.await_trailer(*s, now_);
  s->waiting = true;
  EXPECT_FALSE(receive(mux::FrameType::data, s->id, "dropped"));
  EXPECT_FALSE(receive(mux::FrameType::head, s->id, kHead));  // not "two heads": dropped
  EXPECT_TRUE(s->received.empty());
  EXPECT_TRUE(table_.contains(s->id));
  const std::string long_trailer(mux::kMaxTrailer + 10, '9');
  EXPECT_FALSE(receive(mux::FrameType::trailer, s->id, long_trailer));
  ASSERT_TRUE(s->trailer);
  EXPECT_EQ(s->trailer->size(), mux::kMaxTrailer);
  EXPECT_FALSE(s->awaiting_trailer);
  EXPECT_FALSE(table_.contains(s->id));
  EXPECT_EQ(wake_.size(), 1u);
}

TEST_F(MuxStreamsTest, ATrailerThatNeverComesExpiresWithoutAReset) {
  const auto s = open_stream();
  table_.await_trailer(*s, now_);
  std::string out;
  table_.expire(now_ + mux::kTrailerWait / 2, out, wake_);
  EXPECT_TRUE(table_.contains(s->id));
  table_.expire(now_ + mux::kTrailerWait, out, wake_);
  EXPECT_FALSE(table_.contains(s->id));
  EXPECT_FALSE(s->awaiting_trailer);
  EXPECT_FALSE(s->trailer);
  EXPECT_TRUE(out.empty());
}

TEST_F(MuxStreamsTest, FailAllFailsOpenStreamsAndKeepsFinishedOnes) {
  const auto open = open_stream();
  open->waiting = true;
  const auto finished = open_stream();
  finished->ended = true;
  table_.fail_all(Error{Errc::upstream_error, "lost"}, true, wake_);
  ASSERT_TRUE(open->error);
  EXPECT_EQ(open->error->message, "lost");
  EXPECT_TRUE(open->refused);
  EXPECT_TRUE(open->connection_lost);
  EXPECT_FALSE(finished->error);
  EXPECT_FALSE(finished->connection_lost);
  EXPECT_TRUE(table_.empty());
  ASSERT_EQ(wake_.size(), 1u);
  EXPECT_EQ(wake_.front(), open);
}

TEST(MuxOutboxTest, FramesQueuedTogetherLeaveInOneSend) {
  MuxOutbox outbox;
  EXPECT_FALSE(outbox.start_flush());  // nothing queued: no flush
  mux::append_frame(outbox.frames(), mux::FrameType::request, 1, "first");
  EXPECT_TRUE(outbox.start_flush());
  mux::append_window(outbox.frames(), 3, 1024);
  EXPECT_FALSE(outbox.start_flush());  // one flush per batch
  auto batch = outbox.take();
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->size(), 2 * mux::kFrameHeaderBytes + 5 + 4);
  EXPECT_TRUE(outbox.empty());
  EXPECT_FALSE(outbox.take());  // all sent: the flush is over
  mux::append_frame(outbox.frames(), mux::FrameType::reset, 1, "cancelled");
  EXPECT_TRUE(outbox.start_flush());  // so the next frame starts one
}

TEST(MuxOutboxTest, AStoppedFlushLetsTheNextFrameStartOneAndClearDropsTheQueue) {
  MuxOutbox outbox;
  mux::append_frame(outbox.frames(), mux::FrameType::request, 1, "queued while connecting");
  EXPECT_TRUE(outbox.start_flush());
  outbox.stop_flush();  // the connection was not open: nothing sent
  EXPECT_FALSE(outbox.empty());
  EXPECT_TRUE(outbox.start_flush());
  outbox.clear();
  EXPECT_TRUE(outbox.empty());
  EXPECT_FALSE(outbox.take());
}

}  // namespace
}  // namespace rvenc::http::detail
