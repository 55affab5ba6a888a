// The process group of a data-parallel run: the ranks of an MPI launch (`mpirun -np N gptq ...`),
// or a group of one. Everything MPI lives behind this interface (src/dist/dist.cpp); a build
// without MPI (GPTQ_MPI=OFF) has only the group of one, and the pipeline needs no #ifdef.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gptq/error.h"

namespace gptq::dist {

// The error Group::check_all throws on every rank at once (so no rank needs to end the others).
class GroupError : public Error {
 public:
  using Error::Error;
};

class Group {
 public:
  // The group of one (every call is local; send/recv are errors).
  static Group single() { return Group(0, 1); }
  // The MPI world when this process was started by mpirun/srun (MPI initialized on first call),
  // else the group of one. Throws Error(kArgument) when started by an MPI launcher with more
  // than one rank but built without MPI (N copies would otherwise each do the whole run).
  static Group world();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }

  // Blocking point-to-point of raw bytes (any size; sent in pieces under 2^31). `tag` >= 0.
  void send(const void* data, size_t bytes, int to, int tag) const;
  void recv(void* data, size_t bytes, int from, int tag) const;
  // Rank `from`'s bytes to every rank (the others' vectors are resized to match).
  void broadcast(std::vector<uint8_t>& bytes, int from = 0) const;
  // Collective: every rank passes "" or its error message; when any rank has one, every rank
  // throws GroupError(kArgument) naming each failing rank and its message ("rank 1 of 3: ...").
  void check_all(const std::string& error) const;

 private:
  Group(int rank, int size) : rank_(rank), size_(size) {}
  int rank_, size_;
};

// Payload bytes this process has sent or received through any group (send, recv, broadcast; a
// broadcast counts its size once on every rank), for the per-layer exchange figures.
uint64_t traffic_bytes();

// True when this binary was built with MPI.
bool built_with_mpi();
// True when the environment says an MPI launcher started this process (OpenMPI, PMI, PMIx).
bool launched_by_mpi();
// Ends the whole MPI job (every rank) after printing msg on this rank's stderr; in a group of
// one, exits the process. Never returns.
[[noreturn]] void abort(const std::string& msg, int code);
// Shuts MPI down if world() started it (call once, at the end of main).
void finalize();

}  // namespace gptq::dist
