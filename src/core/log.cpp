#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace gptq::core {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("GPTQ_LOG");
  if (!env) return LogLevel::kInfo;
  if (!std::strcmp(env, "debug")) return LogLevel::kDebug;
  if (!std::strcmp(env, "warn")) return LogLevel::kWarn;
  if (!std::strcmp(env, "error")) return LogLevel::kError;
  if (!std::strcmp(env, "quiet")) return LogLevel::kQuiet;
  return LogLevel::kInfo;
}

std::atomic<LogLevel> g_level{initial_level()};

}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void log_write(LogLevel level, std::string_view msg) {
  static const char* kTags[] = {"debug", "info", "warning", "error", ""};
  std::fprintf(stderr, "gptq: %s: %.*s\n", kTags[static_cast<int>(level)],
               static_cast<int>(msg.size()), msg.data());
}

}  // namespace gptq::core
