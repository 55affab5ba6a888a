// gptq::dist over MPI (GPTQ_HAVE_MPI) or as a group of one. The only file that includes mpi.h.
#include "dist/dist.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gptq/error.h"

#if GPTQ_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace gptq::dist {
namespace {

constexpr size_t kPiece = size_t{1} << 30;  // MPI counts are int: send at most 1 GiB at a time

[[maybe_unused]] int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : 0;
}

[[maybe_unused]] int launcher_size() {
  for (const char* n : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    if (int s = env_int(n); s > 0) return s;
  }
  return 0;
}

uint64_t g_traffic = 0;  // see traffic_bytes(); the pipeline calls the group from one thread

#if GPTQ_HAVE_MPI
bool g_started = false;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(ErrorKind::kIo, fmt::format("MPI {} failed: {}", what, std::string(msg, static_cast<size_t>(len))));
}
#endif

}  // namespace

uint64_t traffic_bytes() { return g_traffic; }

bool built_with_mpi() { return GPTQ_HAVE_MPI != 0; }

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_RANK") || std::getenv("PMI_RANK") || std::getenv("PMIX_RANK");
}

Group Group::world() {
  if (!launched_by_mpi()) return single();
#if GPTQ_HAVE_MPI
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
    // Errors come back as return codes (turned into Error) rather than ending the job at once.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    g_started = true;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return Group(rank, size);
#else
  if (launcher_size() > 1) {
    throw Error(ErrorKind::kArgument,
                fmt::format("started by an MPI launcher with {} ranks, but this gptq was built without MPI "
                            "(rebuild with OpenMPI installed, or -DGPTQ_MPI=ON)",
                            launcher_size()));
  }
  return single();
#endif
}

void Group::send(const void* data, size_t bytes, int to, int tag) const {
  if (size_ == 1) throw Error(ErrorKind::kArgument, "dist: send in a group of one");
#if GPTQ_HAVE_MPI
  const auto* p = static_cast<const uint8_t*>(data);
  size_t off = 0;
  do {
    const int n = static_cast<int>(std::min(kPiece, bytes - off));
    check(MPI_Send(p + off, n, MPI_BYTE, to, tag, MPI_COMM_WORLD), "send");
    off += static_cast<size_t>(n);
  } while (off < bytes);
  g_traffic += bytes;
#else
  (void)data, (void)bytes, (void)to, (void)tag;
#endif
}

void Group::recv(void* data, size_t bytes, int from, int tag) const {
  if (size_ == 1) throw Error(ErrorKind::kArgument, "dist: recv in a group of one");
#if GPTQ_HAVE_MPI
  auto* p = static_cast<uint8_t*>(data);
  size_t off = 0;
  do {
    const int n = static_cast<int>(std::min(kPiece, bytes - off));
    MPI_Status st;
    check(MPI_Recv(p + off, n, MPI_BYTE, from, tag, MPI_COMM_WORLD, &st), "recv");
    int got = 0;
    MPI_Get_count(&st, MPI_BYTE, &got);
    if (got != n) {
      throw Error(ErrorKind::kIo, fmt::format("dist: rank {} sent {} bytes, expected {}", from, got, n));
    }
    off += static_cast<size_t>(n);
  } while (off < bytes);
  g_traffic += bytes;
#else
  (void)data, (void)bytes, (void)from, (void)tag;
#endif
}

void Group::broadcast(std::vector<uint8_t>& bytes, int from) const {
  if (from < 0 || from >= size_) {
    throw Error(ErrorKind::kArgument, fmt::format("dist: broadcast from rank {} in a group of {}", from, size_));
  }
  if (size_ == 1) return;
#if GPTQ_HAVE_MPI
  uint64_t n = bytes.size();
  check(MPI_Bcast(&n, 1, MPI_UINT64_T, from, MPI_COMM_WORLD), "broadcast");
  if (rank_ != from) bytes.resize(n);
  for (size_t off = 0; off < n; off += kPiece) {
    const int c = static_cast<int>(std::min<uint64_t>(kPiece, n - off));
    check(MPI_Bcast(bytes.data() + off, c, MPI_BYTE, from, MPI_COMM_WORLD), "broadcast");
  }
  g_traffic += n;
#endif
}

void Group::check_all(const std::string& error) const {
  if (size_ == 1) {
    if (!error.empty()) throw Error(ErrorKind::kArgument, error);
    return;
  }
#if GPTQ_HAVE_MPI
  int len = static_cast<int>(error.size());
  std::vector<int> lens(static_cast<size_t>(size_));
  check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD), "allgather");
  std::vector<int> displs(static_cast<size_t>(size_));
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[static_cast<size_t>(r)] = total;
    total += lens[static_cast<size_t>(r)];
  }
  if (total == 0) return;
  std::string all(static_cast<size_t>(total), '\0');
  check(MPI_Allgatherv(error.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, MPI_COMM_WORLD),
        "allgatherv");
  std::string msg;
  for (int r = 0; r < size_; ++r) {
    if (lens[static_cast<size_t>(r)] == 0) continue;
    if (!msg.empty()) msg += "; ";
    msg += fmt::format("rank {} of {}: {}", r, size_,
                       all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                                  static_cast<size_t>(lens[static_cast<size_t>(r)])));
  }
  throw GroupError(ErrorKind::kArgument, msg);
#endif
}

void abort(const std::string& msg, int code) {
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
#if GPTQ_HAVE_MPI
  if (g_started) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

void finalize() {
#if GPTQ_HAVE_MPI
  if (g_started) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    g_started = false;
  }
#endif
}

}  // namespace gptq::dist
