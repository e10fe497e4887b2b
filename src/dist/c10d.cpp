// The C side of src/dist/ffi.rs: libtorch's own c10d (TCPStore rendezvous, ProcessGroupGloo,
// ProcessGroupNCCL when built with -DUSE_C10D_NCCL) behind a small C ABI. Every call returns 0
// or 1; on 1 the exception's message (without C++ backtrace) is in `err` (src/shim.h). No
// exception ever unwinds into Rust. Tensors arrive as `at::Tensor*` (tch's C_tensor) and are shared, not copied:
// collectives work in place, as c10d's do.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <string>
#include <vector>

#include "shim.h"

namespace {

struct Store {
  c10::intrusive_ptr<c10d::Store> inner;
};

struct Group {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

using m3ae::guarded;

// Waits for `work` up to the group's timeout; c10d throws on a timeout or a peer's failure.
void wait(const Group* g, const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait(g->timeout)) {
    throw std::runtime_error("the collective did not complete within the timeout");
  }
}

} // namespace

extern "C" {

int m3ae_c10d_has_nccl() {
#ifdef USE_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// A TCPStore client (or, with is_server, the server and a client) for `world` ranks, seen
// through a PrefixStore so that our keys never meet the launcher's.
int m3ae_c10d_store_new(const char* host, uint16_t port, int is_server, int world,
                        int64_t timeout_ms, const char* prefix, void** out, char* err,
                        size_t len) {
  return guarded(err, len, [&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    opts.multiTenant = is_server != 0;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    *out = new Store{prefixed};
  });
}

void m3ae_c10d_store_free(void* store) { delete static_cast<Store*>(store); }

int m3ae_c10d_store_set(void* store, const char* key, const char* value, char* err, size_t len) {
  return guarded(err, len, [&] {
    std::string v(value);
    static_cast<Store*>(store)->inner->set(key, std::vector<uint8_t>(v.begin(), v.end()));
  });
}

// `*present` = whether `key` is set, without waiting.
int m3ae_c10d_store_check(void* store, const char* key, int* present, char* err, size_t len) {
  return guarded(err, len, [&] {
    *present = static_cast<Store*>(store)->inner->check({std::string(key)}) ? 1 : 0;
  });
}

// A process group on `store`: backend 0 = Gloo (CPU tensors), 1 = NCCL (CUDA tensors).
int m3ae_c10d_group_new(void* store, int backend, int rank, int world, int64_t timeout_ms,
                        void** out, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto base = static_cast<Store*>(store)->inner;
    c10::intrusive_ptr<c10d::Backend> pg;
    if (backend == 0) {
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo/", base);
      // create_default picks the device as torch.distributed does (GLOO_SOCKET_IFNAME, else
      // the host name's address, else loopback); the timeout bounds every gloo operation.
      auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, opts);
    } else {
#ifdef USE_C10D_NCCL
      // Without blocking wait, NCCL's timeout only arms a watchdog that aborts the process;
      // with it, wait() throws and the error reaches Rust. ProcessGroupNCCL reads it from
      // TORCH_NCCL_BLOCKING_WAIT in its constructor and has no option for it; setting the
      // variable here would race the threads already running (setenv is not thread-safe), so
      // the process sets it at its start, before any thread (m3ae::runtime::set_process_env),
      // and the launcher hands it to each rank (src/dist/ffi.rs warns where it is missing).
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl/", base);
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, world, opts);
#else
      throw std::runtime_error("this build has no NCCL: build.rs found no CUDA headers");
#endif
    }
    *out = new Group{pg, timeout};
  });
}

// Frees a group whose collectives all completed. After a failure, Rust leaks the group
// instead: ProcessGroupGloo's destructor would wait for the failed work's threads.
void m3ae_c10d_group_free(void* group) { delete static_cast<Group*>(group); }

// Tears down a failed group's communicators (NCCL); a no-op for Gloo.
void m3ae_c10d_group_abort(void* group) {
  try {
    static_cast<Group*>(group)->backend->abort();
  } catch (...) {
  }
}

int m3ae_c10d_allreduce_sum(void* group, const at::Tensor* t, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(group);
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    wait(g, g->backend->allreduce(tensors, opts));
  });
}

int m3ae_c10d_broadcast(void* group, const at::Tensor* t, int root, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(group);
    std::vector<at::Tensor> tensors{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    wait(g, g->backend->broadcast(tensors, opts));
  });
}

// outputs[r] receives rank r's `input`; every output has the input's shape and dtype.
int m3ae_c10d_allgather(void* group, const at::Tensor* input, const at::Tensor* const* outputs,
                        size_t n, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(group);
    std::vector<at::Tensor> inputs{*input};
    std::vector<std::vector<at::Tensor>> outs(1);
    for (size_t i = 0; i < n; ++i) outs[0].push_back(*outputs[i]);
    c10d::AllgatherOptions opts;
    opts.timeout = g->timeout;
    wait(g, g->backend->allgather(outs, inputs, opts));
  });
}

int m3ae_c10d_barrier(void* group, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(group);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    wait(g, g->backend->barrier(opts));
  });
}

} // extern "C"
