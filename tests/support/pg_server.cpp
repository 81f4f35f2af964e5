#include "support/pg_server.hpp"

#include <libpq-fe.h>

#include <csignal>
#include <stdexcept>

namespace rvenc::test {
namespace {

constexpr auto kInitTimeout = std::chrono::seconds(120);
constexpr auto kStartTimeout = std::chrono::seconds(60);

}  // namespace

PgServer::PgServer(PgServerOptions options) : port_(free_port()) {
  auto commands = bench::prepare_local_postgres(dir_.path(), static_cast<std::uint16_t>(port_), options.address);
  if (!commands) throw std::runtime_error(commands.error().message);
  commands_ = std::move(*commands);
  commands_.initdb.insert(commands_.initdb.begin(), options.prefix.begin(), options.prefix.end());
  commands_.postgres.insert(commands_.postgres.begin(), options.prefix.begin(), options.prefix.end());
  ChildProcess init(commands_.initdb);
  const int status = init.wait_exit(kInitTimeout);
  init_output_ = init.output();
  if (status != 0) {
    init_output_ += "\ninitdb exited with " + std::to_string(status);
    return;
  }
  start();
}

PgServer::~PgServer() { stop(); }

bool PgServer::start() {
  stop();
  process_ = std::make_unique<ChildProcess>(commands_.postgres);
  ready_ = process_->wait_for_line(commands_.ready_line, kStartTimeout).has_value();
  return ready_;
}

void PgServer::stop(bool crash) {
  if (process_) process_->stop(crash ? SIGKILL : SIGINT, std::chrono::seconds(20));
  if (process_) init_output_ += process_->output();
  process_.reset();
  ready_ = false;
}

std::string PgServer::url(const std::string& dbname) const { return commands_.url(dbname); }

std::string PgServer::create_database() {
  const std::string name = "rvenc_test_" + std::to_string(++databases_);
  PGconn* conn = PQconnectdb(url("postgres").c_str());
  bool ok = PQstatus(conn) == CONNECTION_OK;
  if (ok) {
    // The name is ours (a counter), never user input.
    PGresult* result = PQexec(conn, ("CREATE DATABASE " + name).c_str());
    ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
  }
  PQfinish(conn);
  return ok ? url(name) : std::string();
}

std::string PgServer::output() const { return init_output_ + (process_ ? process_->output() : std::string()); }

PgServer& shared_pg_server() {
  static PgServer server;
  return server;
}

}  // namespace rvenc::test
