// The coroutine type of every rvenc interface that runs on an Asio executor, alone, so that a
// header needing only it (the client SDK's) does not pull Beast's HTTP messages into its callers.
//
// Design: an alias of asio::awaitable; Asio is compiled separately (BOOST_ASIO_SEPARATE_COMPILATION),
// so any target using it links rvenc::http.
#pragma once

#include <boost/asio/awaitable.hpp>

namespace rvenc::http {

namespace asio = boost::asio;

template <class T>
using awaitable = asio::awaitable<T>;

}  // namespace rvenc::http
