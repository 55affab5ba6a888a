#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "gptq/progress.h"

namespace gptq {
namespace {

std::string fmt_secs(double s) {
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  }
  return buf;
}

}  // namespace

ProgressCallback terminal_progress() {
  if (!isatty(STDERR_FILENO)) return [](const Progress&) {};
  using Clock = std::chrono::steady_clock;
  struct State {
    Clock::time_point start = Clock::now();
    Clock::time_point last{};
    std::string stage;
  };
  auto st = std::make_shared<State>();
  return [st](const Progress& p) {
    const auto now = Clock::now();
    if (p.stage != st->stage) {
      st->stage = p.stage;
      st->start = now;
    }
    const bool finished = p.total > 0 && p.done >= p.total;
    if (!finished && now - st->last < std::chrono::milliseconds(100)) return;
    st->last = now;
    const double el = std::chrono::duration<double>(now - st->start).count();
    std::string eta = "?";
    if (p.done > 0 && p.total > 0) eta = fmt_secs(el * static_cast<double>(p.total - p.done) / p.done);
    std::fprintf(stderr, "\r\033[K%s %lld/%lld %s  elapsed %s  eta %s", p.stage.c_str(),
                 static_cast<long long>(p.done), static_cast<long long>(p.total), p.item.c_str(),
                 fmt_secs(el).c_str(), eta.c_str());
    if (finished) std::fputc('\n', stderr);
    std::fflush(stderr);
  };
}

}  // namespace gptq
