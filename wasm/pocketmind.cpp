// pocketmind's C API over llama.cpp (see pocketmind.h). One file, thin on purpose: validate, call llama.cpp,
// turn every failure into a status code plus a message.
#include "pocketmind.h"

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml-opt.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef __EMSCRIPTEN__
#include <emscripten.h>
#include <wasm_simd128.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#ifndef PM_MAX_THREADS
#define PM_MAX_THREADS 64
#endif
#ifndef PM_LLAMA_SOURCE
#define PM_LLAMA_SOURCE "llama.cpp"
#endif

// Both handles own what they hold and release it in their destructor: a constructor call that fails or throws
// half-way (out of memory, a ggml abort) frees everything made so far by dropping its unique_ptr.
struct pm_model {
    llama_model * model = nullptr;
    const llama_vocab * vocab = nullptr;
    std::string buffer_path;  // the file that stands for a loaded buffer, removed on free
    std::string source;       // the file llama.cpp read (empty for a buffer natively: its copy is gone)
    bool writable = false;    // weights in memory of the model's own (pm_model_load_trainable): trainable
    int32_t n_ctx_train = 0;  // as loaded: llama.cpp's training sets the llama_model's own value to its window
    std::vector<pm_adapter *> adapters;  // loaded for this model: llama_model_free releases their llama.cpp part

    pm_model() = default;
    pm_model(const pm_model &) = delete;
    pm_model & operator=(const pm_model &) = delete;
    ~pm_model() {
        if (model) {
            llama_model_free(model);
        }
        if (!buffer_path.empty()) {
            remove(buffer_path.c_str());
        }
    }
};

// A LoRA adapter loaded for one model. Contexts that apply it are listed, so that freeing it (or its model)
// first takes it off them: llama.cpp's contexts keep bare pointers to the adapters they apply.
struct pm_adapter {
    pm_model * owner = nullptr;  // NULL once the model is freed
    llama_adapter_lora * lora = nullptr;
    std::vector<pm_context *> users;

    pm_adapter() = default;
    pm_adapter(const pm_adapter &) = delete;
    pm_adapter & operator=(const pm_adapter &) = delete;
    ~pm_adapter() {
        if (lora) {
            llama_adapter_lora_free(lora);  // also drops it from its model's list
        }
    }
};

struct pm_context {
    pm_model * owner = nullptr;
    llama_context * ctx = nullptr;
    ggml_threadpool * threadpool = nullptr;
    // The batch's arrays live in vectors (one sequence id per token): unlike llama_batch_init's unchecked mallocs,
    // running out of memory here throws, and the context is released.
    llama_batch batch{};
    std::vector<llama_token> batch_token;
    std::vector<llama_pos> batch_pos;
    std::vector<int32_t> batch_n_seq_id;
    std::vector<llama_seq_id> batch_seq;
    std::vector<llama_seq_id *> batch_seq_id;
    std::vector<int8_t> batch_logits;
    int32_t n_batch = 0;
    bool embeddings = false;        // made with PM_CONTEXT_EMBEDDINGS
    int32_t last_n = 0;             // tokens in the last pm_decode
    bool last_all = false;          // whether it kept every position's logits
    std::vector<float> all_logits;  // every position's logits when the decode took several batches
    std::vector<pm_adapter *> adapters;  // LoRA adapters applied, with their scales
    std::vector<float> adapter_scales;

    pm_context() = default;
    pm_context(const pm_context &) = delete;
    pm_context & operator=(const pm_context &) = delete;
    ~pm_context() {
        for (pm_adapter * a : adapters) {
            a->users.erase(std::remove(a->users.begin(), a->users.end(), this), a->users.end());
        }
        if (ctx) {
            llama_detach_threadpool(ctx);
            llama_free(ctx);
        }
        if (threadpool) {
            ggml_threadpool_free(threadpool);
        }
    }

    // Hand the adapter list to llama.cpp (which rebuilds its graph on the next decode if the list changed).
    void apply_adapters() {
        std::vector<llama_adapter_lora *> loras;
        for (pm_adapter * a : adapters) {
            loras.push_back(a->lora);
        }
        llama_set_adapters_lora(ctx, loras.data(), loras.size(), adapter_scales.data());
    }

    // Stop applying adapter a (freed, or its model is).
    void drop_adapter(const pm_adapter * a) {
        for (size_t i = adapters.size(); i-- > 0;) {
            if (adapters[i] == a) {
                adapters.erase(adapters.begin() + i);
                adapter_scales.erase(adapter_scales.begin() + i);
            }
        }
        apply_adapters();
    }

    void alloc_batch(int32_t n) {
        batch_token.resize(n);
        batch_pos.resize(n);
        batch_n_seq_id.resize(n);
        batch_seq.assign(n, 0);
        batch_seq_id.resize(n + 1);
        for (int32_t i = 0; i < n; i++) {
            batch_seq_id[i] = &batch_seq[i];
        }
        batch_seq_id[n] = nullptr;
        batch_logits.resize(n);
        batch = llama_batch{0, batch_token.data(), nullptr, batch_pos.data(), batch_n_seq_id.data(),
                            batch_seq_id.data(), batch_logits.data()};
    }
};

// Fine-tuning state: its own context (made for training: window = batch = micro-batch, F32 KV), llama.cpp's
// optimizer in that context, and a one-window data set refilled for every step.
struct pm_trainer {
    pm_context * ctx = nullptr;
    int32_t n_ctx = 0;
    int32_t first_layer = 0;                 // blocks first_layer.. are trained
    std::vector<ggml_tensor *> params;       // the trainable tensors (llama.cpp's param filter picked them)
    std::vector<std::vector<char>> saved;    // their checkpoint, once pm_trainer_checkpoint(save) ran
    ggml_opt_optimizer_params opt{};         // read by the optimizer before every step
    ggml_opt_dataset_t data = nullptr;
    ggml_opt_result_t result = nullptr;

    pm_trainer() = default;
    pm_trainer(const pm_trainer &) = delete;
    pm_trainer & operator=(const pm_trainer &) = delete;
    ~pm_trainer() {
        if (result) {
            ggml_opt_result_free(result);
        }
        if (data) {
            ggml_opt_dataset_free(data);
        }
        delete ctx;  // with it the optimizer (llama.cpp's context owns it)
    }
};

namespace {

thread_local std::string g_error;       // message for pm_last_error
thread_local std::string g_log_errors;  // llama.cpp's error lines logged during the current call
thread_local bool g_in_call = false;    // a guarded call is running on this thread
int g_log_level = 2;

struct ggml_abort_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void on_log(ggml_log_level level, const char * text, void *) {
    static thread_local ggml_log_level last = GGML_LOG_LEVEL_INFO;
    if (level != GGML_LOG_LEVEL_CONT) {
        last = level;
    }
    if (last == GGML_LOG_LEVEL_ERROR && g_log_errors.size() < 4096) {
        g_log_errors += text;
    }
    const int wanted = last == GGML_LOG_LEVEL_ERROR ? 1 : last == GGML_LOG_LEVEL_WARN ? 2
                     : last == GGML_LOG_LEVEL_INFO  ? 3 : 4;
    if (wanted <= g_log_level) {
        fputs(text, stderr);
    }
}

// ggml reports broken invariants through GGML_ASSERT/GGML_ABORT, which would end the whole process (the
// browser tab's module). Inside one of our calls we turn them into an exception that the call reports.
void on_ggml_abort(const char * message) {
    if (g_in_call) {
        throw ggml_abort_error(message);
    }
}

void init_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(on_log, nullptr);
        ggml_set_abort_callback(on_ggml_abort);
        llama_backend_init();
    });
}

int32_t fail(int32_t status, std::string message) {
    // llama.cpp explains most failures only in its log: add those lines
    std::string logged = g_log_errors;
    while (!logged.empty() && (logged.back() == '\n' || logged.back() == ' ')) {
        logged.pop_back();
    }
    if (!logged.empty() && message.find(logged) == std::string::npos) {
        message += ": " + logged;
    }
    g_error = std::move(message);
    return status;
}

// Run one API call: fresh error state, llama.cpp exceptions and aborts become PM_ERR_INTERNAL.
template <typename F>
int32_t guarded(F && body) {
    init_once();
    g_error.clear();
    g_log_errors.clear();
    g_in_call = true;
    int32_t status;
    try {
        status = body();
    } catch (const std::bad_alloc &) {
        status = fail(PM_ERR_INTERNAL, "out of memory");
    } catch (const std::exception & e) {
        status = fail(PM_ERR_INTERNAL, std::string("llama.cpp failed: ") + e.what());
    } catch (...) {
        status = fail(PM_ERR_INTERNAL, "llama.cpp failed with an unknown exception");
    }
    g_in_call = false;
    return status;
}

// Copy a string into a caller buffer with the size-query convention of the header.
int32_t put_string(const std::string & s, char * buf, int32_t size, int32_t * n_out) {
    if (n_out) {
        *n_out = (int32_t) s.size();
    }
    if (!buf || size <= (int32_t) s.size()) {
        if (buf && size > 0) {
            buf[0] = '\0';
        }
        return fail(PM_ERR_BUFFER_TOO_SMALL, "buffer of " + std::to_string(size) + " bytes is too small for " +
                                                 std::to_string(s.size() + 1));
    }
    memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    return PM_OK;
}

// llama.cpp's snprintf-style getters: ask for the length, then fill.
template <typename G>
int32_t get_string(G && getter, std::string & out) {
    char small[256];
    int32_t n = getter(small, sizeof(small));
    if (n < 0) {
        return n;
    }
    if (n < (int32_t) sizeof(small)) {
        out.assign(small, n);
        return n;
    }
    out.resize(n + 1);
    n = getter(&out[0], out.size());
    out.resize(n < 0 ? 0 : n);
    return n;
}

// Load into m (made before the load, so nothing loaded can be orphaned); on success *out takes it over.
int32_t load(std::unique_ptr<pm_model> m, const char * path, const std::string & label, pm_model ** out) {
    llama_model_params params = llama_model_default_params();
    // weights stay where the file's bytes are, unless they are to be trained: then in writable memory of their own
    params.load_mode = m->writable ? LLAMA_LOAD_MODE_NONE : LLAMA_LOAD_MODE_MMAP;
    params.use_extra_bufts = false;          // no repacked copy of the weights
    m->model = llama_model_load_from_file(path, params);
    if (!m->model) {
        return fail(PM_ERR_LOAD, "cannot load model " + label);
    }
    m->vocab = llama_model_get_vocab(m->model);
    m->n_ctx_train = llama_model_n_ctx_train(m->model);
    *out = m.release();
    return PM_OK;
}

#ifndef __EMSCRIPTEN__
struct fd_closer {
    int fd;
    ~fd_closer() { close(fd); }
};

// Natively the loaders want a file: an anonymous in-memory file holding a copy of the bytes. On success *fd is
// open (the caller closes it) and *path names it.
int32_t memfd_copy(const void * data, size_t size, const char * name, int * fd, std::string * path) {
    *fd = memfd_create(name, MFD_CLOEXEC);
    if (*fd < 0) {
        return fail(PM_ERR_INTERNAL, std::string("memfd_create failed: ") + strerror(errno));
    }
    const char * p = (const char *) data;
    size_t left = size;
    while (left > 0) {
        ssize_t n = write(*fd, p, left);
        if (n <= 0) {
            const int saved = errno;
            close(*fd);
            *fd = -1;
            return fail(PM_ERR_INTERNAL, std::string("writing the buffer failed: ") + strerror(saved));
        }
        p += n;
        left -= (size_t) n;
    }
    *path = "/proc/self/fd/" + std::to_string(*fd);
    return PM_OK;
}
#endif

std::string buffer_label(size_t size) { return "from a buffer of " + std::to_string(size) + " bytes"; }

// A string-valued GGUF key, "" when absent; *wrong_type when it is there but not a string.
std::string gguf_string(const gguf_context * g, const char * key, bool * wrong_type) {
    const int64_t id = gguf_find_key(g, key);
    *wrong_type = id >= 0 && gguf_get_kv_type(g, id) != GGUF_TYPE_STRING;
    return id < 0 || *wrong_type ? std::string() : std::string(gguf_get_val_str(g, id));
}

// What llama.cpp's adapter loader does not check itself, or reports less clearly (it names neither architecture,
// and reads some keys with an abort on a wrong type): refuse those adapters with a message saying why.
int32_t check_adapter(const pm_model * m, const char * path, const std::string & label) {
    ggml_context * meta = nullptr;
    gguf_init_params params = {/*no_alloc =*/ true, /*ctx =*/ &meta};
    std::unique_ptr<gguf_context, decltype(&gguf_free)> g(gguf_init_from_file(path, params), gguf_free);
    std::unique_ptr<ggml_context, decltype(&ggml_free)> tensors(meta, ggml_free);
    const std::string what = "cannot load adapter " + label;
    if (!g || !meta) {
        return fail(PM_ERR_LOAD, what + ": not a GGUF file, or a damaged or truncated one");
    }
    bool bad = false;
    const std::string type = gguf_string(g.get(), "general.type", &bad);
    const auto shown = [&](const std::string & value) {
        return bad ? std::string("not a string") : value.empty() ? std::string("missing") : "'" + value + "'";
    };
    if (bad || type != "adapter") {
        return fail(PM_ERR_LOAD, what + ": not an adapter (general.type is " + shown(type) + ", not 'adapter')");
    }
    const std::string kind = gguf_string(g.get(), "adapter.type", &bad);
    if (bad || kind != "lora") {
        return fail(PM_ERR_LOAD, what + ": not a LoRA adapter (adapter.type is " + shown(kind) + ", not 'lora')");
    }
    const std::string arch = gguf_string(g.get(), "general.architecture", &bad);
    std::string model_arch;
    get_string([&](char * b, size_t n) { return llama_model_meta_val_str(m->model, "general.architecture", b, n); },
               model_arch);
    if (bad || arch.empty()) {
        return fail(PM_ERR_LOAD, what + ": it names no architecture (general.architecture is " + shown(arch) + ")");
    }
    if (arch != model_arch) {
        return fail(PM_ERR_LOAD, what + ": it is for architecture '" + arch + "', the model is '" + model_arch + "'");
    }
    const int64_t alpha = gguf_find_key(g.get(), "adapter.lora.alpha");
    if (alpha >= 0 && gguf_get_kv_type(g.get(), alpha) != GGUF_TYPE_FLOAT32) {
        return fail(PM_ERR_LOAD, what + ": adapter.lora.alpha is a " +
                                     gguf_type_name(gguf_get_kv_type(g.get(), alpha)) + ", not a float32");
    }
    // converters may record the base model's width: another one is the wrong base model
    const int64_t width = gguf_find_key(g.get(), (arch + ".embedding_length").c_str());
    if (width >= 0) {
        const gguf_type t = gguf_get_kv_type(g.get(), width);
        const int64_t n_embd = t == GGUF_TYPE_UINT32 ? (int64_t) gguf_get_val_u32(g.get(), width)
                             : t == GGUF_TYPE_INT32  ? (int64_t) gguf_get_val_i32(g.get(), width) : -1;
        if (n_embd != llama_model_n_embd(m->model)) {
            return fail(PM_ERR_LOAD, what + ": it was made for a base model with n_embd " + std::to_string(n_embd) +
                                         ", this model has " + std::to_string(llama_model_n_embd(m->model)));
        }
    }
    if (gguf_get_n_tensors(g.get()) == 0) {
        return fail(PM_ERR_LOAD, what + ": it holds no tensors");
    }
    for (ggml_tensor * t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t)) {
        if (t->ne[2] != 1 || t->ne[3] != 1) {
            return fail(PM_ERR_LOAD, what + ": tensor '" + t->name + "' is not a matrix");
        }
        const bool usable = t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16 || t->type == GGML_TYPE_BF16 ||
                            ggml_is_quantized(t->type);
        if (!usable) {
            return fail(PM_ERR_LOAD, what + ": tensor '" + t->name + "' is of type " + ggml_type_name(t->type) +
                                         ", not a floating-point or quantized one");
        }
        // llama.cpp checks that lora_a and lora_b agree on the rank, except for the token embeddings (stored
        // the other way round): a mismatch there would fail inside the graph
        const std::string name = t->name;
        const std::string embd = "token_embd.weight.lora_a";
        if (name.size() >= embd.size() && name.compare(name.size() - embd.size(), embd.size(), embd) == 0) {
            const ggml_tensor * b = ggml_get_tensor(meta, (name.substr(0, name.size() - 1) + "b").c_str());
            if (b && b->ne[0] != t->ne[0]) {
                return fail(PM_ERR_LOAD, what + ": the rank of '" + name + "' (" + std::to_string(t->ne[0]) +
                                             ") differs from its lora_b's (" + std::to_string(b->ne[0]) + ")");
            }
        }
    }
    return PM_OK;
}

// Load the adapter file at path for model m (after check_adapter); on success *out takes it.
int32_t load_adapter(pm_model * m, const char * path, const std::string & label, pm_adapter ** out) {
    if (check_adapter(m, path, label) != PM_OK) {
        return PM_ERR_LOAD;
    }
    std::unique_ptr<pm_adapter> a(new pm_adapter);
    a->lora = llama_adapter_lora_init(m->model, path);
    if (!a->lora) {
        return fail(PM_ERR_LOAD, "cannot load adapter " + label);  // + the reason llama.cpp logged
    }
    m->adapters.push_back(a.get());
    a->owner = m;
    *out = a.release();
    return PM_OK;
}

bool valid_token(const pm_model * m, int32_t token) {
    return token >= 0 && token < llama_vocab_n_tokens(m->vocab);
}

}  // namespace

#ifdef __EMSCRIPTEN__
// Make `path` a MEMFS file whose bytes are [data, data+size) of the wasm heap itself: reads see the heap and
// mmap hands out the heap address, so llama.cpp uses the weights in place.
EM_JS(int, pm_js_map_buffer, (const char * path, const void * data, size_t size), {
    try {
        // wasm32 pointers and sizes arrive as signed numbers: one at or above 2 GiB would be negative
        data >>>= 0;
        size >>>= 0;
        var name = UTF8ToString(path >>> 0);
        try { FS.mkdir('/pm-buffers'); } catch (e) {}
        FS.writeFile(name, new Uint8Array(0));
        var node = FS.lookupPath(name).node;
        var heap = function () {
            // a grown memory has a new buffer; views on the old one are stale
            return (wasmMemory.buffer === HEAPU8.buffer) ? HEAPU8 : new Uint8Array(wasmMemory.buffer);
        };
        Object.defineProperty(node, 'contents', {
            get: function () { return heap().subarray(data, data + size); },
            set: function (v) {},
            configurable: true
        });
        node.usedBytes = size;
        var ops = Object.assign({}, node.stream_ops);
        ops.write = function () { throw new FS.ErrnoError(63); };
        ops.mmap = function (stream, address, length, position) { return { ptr: data + position, allocated: false }; };
        node.stream_ops = ops;
        return 0;
    } catch (e) {
        err('pm_js_map_buffer: ' + e);
        return -1;
    }
});
#endif

extern "C" {

const char * pm_last_error(void) { return g_error.c_str(); }

const char * pm_version(void) { return "pocketmind 0.1.0 (" PM_LLAMA_SOURCE ")"; }

void * pm_buffer_alloc(size_t size) {
    // 64-byte aligned: ggml uses a model buffer in place only if it is aligned. aligned_alloc wants a multiple
    // of 64; within 63 bytes of SIZE_MAX (4 GiB in wasm32) rounding up would wrap to a tiny size.
    if (size == 0 || size > SIZE_MAX - 63) {
        return nullptr;
    }
    return aligned_alloc(64, (size + 63) / 64 * 64);
}

void pm_buffer_free(void * ptr) { free(ptr); }

void pm_set_log_level(int32_t level) {
    init_once();
    g_log_level = level;
}

// pm_model_load_file's and pm_model_load_trainable's work: they differ only in where the weights live.
static int32_t load_by_path(const char * path, bool writable, pm_model ** out) {
    return guarded([&]() -> int32_t {
        if (!path || !out) {
            return fail(PM_ERR_INVALID_ARGUMENT, "path and out must not be NULL");
        }
        *out = nullptr;
        std::unique_ptr<pm_model> m(new pm_model);
        m->source = path;
        m->writable = writable;
        return load(std::move(m), path, std::string("'") + path + "'", out);
    });
}

int32_t pm_model_load_file(const char * path, pm_model ** out) { return load_by_path(path, false, out); }

int32_t pm_model_load_buffer(const void * data, size_t size, pm_model ** out) {
    return guarded([&]() -> int32_t {
        if (!data || !out || size == 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "data and out must not be NULL and size must not be 0");
        }
        *out = nullptr;
#ifdef __EMSCRIPTEN__
        if ((uintptr_t) data % 64 != 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model buffer must be 64-byte aligned (allocate it with aligned_alloc)");
        }
        std::unique_ptr<pm_model> m(new pm_model);
        m->buffer_path = "/pm-buffers/" + std::to_string((uintptr_t) data) + ".gguf";  // removed with m
        if (pm_js_map_buffer(m->buffer_path.c_str(), data, size) != 0) {
            return fail(PM_ERR_INTERNAL, "cannot expose the buffer to the loader");
        }
        const std::string path = m->buffer_path;
        m->source = path;
        return load(std::move(m), path.c_str(), buffer_label(size), out);
#else
        int fd = -1;
        std::string path;
        if (memfd_copy(data, size, "pocketmind-model", &fd, &path) != PM_OK) {
            return PM_ERR_INTERNAL;
        }
        const fd_closer closer{fd};  // however this call ends; a loaded model's mapping keeps the bytes alive
        return load(std::unique_ptr<pm_model>(new pm_model), path.c_str(), buffer_label(size), out);
#endif
    });
}

void pm_model_free(pm_model * model) {
    if (!model) {
        return;
    }
    guarded([&]() -> int32_t {
        // llama_model_free releases the adapters' llama.cpp part: take them off their contexts first, and leave
        // their handles empty for pm_adapter_free
        for (pm_adapter * a : model->adapters) {
            for (pm_context * c : a->users) {
                c->drop_adapter(a);
            }
            a->users.clear();
            a->owner = nullptr;
            a->lora = nullptr;
        }
        model->adapters.clear();
        return PM_OK;
    });
    delete model;
}

int32_t pm_model_n_vocab(const pm_model * m) { return m ? llama_vocab_n_tokens(m->vocab) : -1; }
int32_t pm_model_n_ctx_train(const pm_model * m) { return m ? m->n_ctx_train : -1; }
int32_t pm_model_n_embd(const pm_model * m) { return m ? llama_model_n_embd(m->model) : -1; }
double pm_model_n_params(const pm_model * m) { return m ? (double) llama_model_n_params(m->model) : 0; }
double pm_model_size(const pm_model * m) { return m ? (double) llama_model_size(m->model) : 0; }
int32_t pm_model_token_bos(const pm_model * m) { return m ? llama_vocab_bos(m->vocab) : -1; }
int32_t pm_model_token_eos(const pm_model * m) { return m ? llama_vocab_eos(m->vocab) : -1; }
int32_t pm_model_token_eot(const pm_model * m) { return m ? llama_vocab_eot(m->vocab) : -1; }
int32_t pm_model_add_bos(const pm_model * m) { return m ? llama_vocab_get_add_bos(m->vocab) : 0; }

int32_t pm_model_is_eog(const pm_model * m, int32_t token) {
    return m && valid_token(m, token) && llama_vocab_is_eog(m->vocab, token);
}

int32_t pm_model_meta_count(const pm_model * m) { return m ? llama_model_meta_count(m->model) : -1; }

int32_t pm_model_meta_key(const pm_model * m, int32_t i, char * buf, int32_t size, int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!m || i < 0 || i >= llama_model_meta_count(m->model)) {
            return fail(PM_ERR_INVALID_ARGUMENT, "metadata index " + std::to_string(i) + " out of range");
        }
        std::string s;
        get_string([&](char * b, size_t n) { return llama_model_meta_key_by_index(m->model, i, b, n); }, s);
        return put_string(s, buf, size, n_out);
    });
}

int32_t pm_model_meta_value(const pm_model * m, int32_t i, char * buf, int32_t size, int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!m || i < 0 || i >= llama_model_meta_count(m->model)) {
            return fail(PM_ERR_INVALID_ARGUMENT, "metadata index " + std::to_string(i) + " out of range");
        }
        std::string s;
        get_string([&](char * b, size_t n) { return llama_model_meta_val_str_by_index(m->model, i, b, n); }, s);
        return put_string(s, buf, size, n_out);
    });
}

int32_t pm_model_meta_get(const pm_model * m, const char * key, char * buf, int32_t size, int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!m || !key) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model and key must not be NULL");
        }
        std::string s;
        if (get_string([&](char * b, size_t n) { return llama_model_meta_val_str(m->model, key, b, n); }, s) < 0) {
            return fail(PM_ERR_NOT_FOUND, std::string("no metadata key '") + key + "'");
        }
        return put_string(s, buf, size, n_out);
    });
}

int32_t pm_model_desc(const pm_model * m, char * buf, int32_t size, int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!m) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model must not be NULL");
        }
        std::string s;
        get_string([&](char * b, size_t n) { return llama_model_desc(m->model, b, n); }, s);
        return put_string(s, buf, size, n_out);
    });
}

int32_t pm_model_chat_template(const pm_model * m, const char ** out) {
    return guarded([&]() -> int32_t {
        if (!m || !out) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model and out must not be NULL");
        }
        *out = llama_model_chat_template(m->model, nullptr);
        return *out ? PM_OK : fail(PM_ERR_NOT_FOUND, "the model declares no chat template");
    });
}

int32_t pm_adapter_load_file(pm_model * m, const char * path, pm_adapter ** out) {
    return guarded([&]() -> int32_t {
        if (!m || !path || !out) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model, path and out must not be NULL");
        }
        *out = nullptr;
        return load_adapter(m, path, std::string("'") + path + "'", out);
    });
}

int32_t pm_adapter_load_buffer(pm_model * m, const void * data, size_t size, pm_adapter ** out) {
    return guarded([&]() -> int32_t {
        if (!m || !data || !out || size == 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model, data and out must not be NULL and size must not be 0");
        }
        *out = nullptr;
#ifdef __EMSCRIPTEN__
        // the loader reads the buffer through a file that is the heap itself (no copy), removed after the load:
        // the adapter keeps copies of its tensors
        const std::string path = "/pm-buffers/adapter-" + std::to_string((uintptr_t) data) + ".gguf";
        if (pm_js_map_buffer(path.c_str(), data, size) != 0) {
            return fail(PM_ERR_INTERNAL, "cannot expose the buffer to the loader");
        }
        struct remover {
            const std::string & path;
            ~remover() { remove(path.c_str()); }
        } const removed{path};
#else
        int fd = -1;
        std::string path;
        if (memfd_copy(data, size, "pocketmind-adapter", &fd, &path) != PM_OK) {
            return PM_ERR_INTERNAL;
        }
        const fd_closer closer{fd};
#endif
        return load_adapter(m, path.c_str(), buffer_label(size), out);
    });
}

void pm_adapter_free(pm_adapter * a) {
    if (!a) {
        return;
    }
    guarded([&]() -> int32_t {
        for (pm_context * c : a->users) {
            c->drop_adapter(a);
        }
        a->users.clear();
        if (a->owner) {
            auto & list = a->owner->adapters;
            list.erase(std::remove(list.begin(), list.end(), a), list.end());
        }
        return PM_OK;
    });
    delete a;
}

int32_t pm_adapter_meta_get(const pm_adapter * a, const char * key, char * buf, int32_t size, int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!a || !key) {
            return fail(PM_ERR_INVALID_ARGUMENT, "adapter and key must not be NULL");
        }
        if (!a->lora) {
            return fail(PM_ERR_INVALID_ARGUMENT, "the adapter's model was freed");
        }
        std::string s;
        if (get_string([&](char * b, size_t n) { return llama_adapter_meta_val_str(a->lora, key, b, n); }, s) < 0) {
            return fail(PM_ERR_NOT_FOUND, std::string("no adapter metadata key '") + key + "'");
        }
        return put_string(s, buf, size, n_out);
    });
}

int32_t pm_context_set_adapters(pm_context * c, pm_adapter * const * adapters, const float * scales, int32_t n) {
    return guarded([&]() -> int32_t {
        if (!c || n < 0 || (n > 0 && (!adapters || !scales))) {
            return fail(PM_ERR_INVALID_ARGUMENT, "set_adapters needs a context, n >= 0, and n adapters and scales");
        }
        std::vector<pm_adapter *> chosen(adapters, adapters + n);
        std::vector<float> chosen_scales(scales, scales + n);
        for (int32_t i = 0; i < n; i++) {
            const std::string which = "adapter " + std::to_string(i);
            if (!chosen[i]) {
                return fail(PM_ERR_INVALID_ARGUMENT, which + " is NULL");
            }
            if (chosen[i]->owner != c->owner) {
                return fail(PM_ERR_INVALID_ARGUMENT, which + (chosen[i]->owner ? " was loaded for another model"
                                                                                : "'s model was freed"));
            }
            if (!std::isfinite(chosen_scales[i])) {
                return fail(PM_ERR_INVALID_ARGUMENT, which + " has a scale that is not a finite number");
            }
            if (std::find(chosen.begin(), chosen.begin() + i, chosen[i]) != chosen.begin() + i) {
                return fail(PM_ERR_INVALID_ARGUMENT, which + " is given twice");
            }
        }
        for (pm_adapter * a : c->adapters) {
            a->users.erase(std::remove(a->users.begin(), a->users.end(), c), a->users.end());
        }
        c->adapters = std::move(chosen);
        c->adapter_scales = std::move(chosen_scales);
        for (pm_adapter * a : c->adapters) {
            a->users.push_back(c);
        }
        c->apply_adapters();
        return PM_OK;
    });
}

int32_t pm_tokenize(const pm_model * m, const char * text, int32_t text_len, int32_t add_special,
                    int32_t parse_special, int32_t * tokens, int32_t n_max, int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!m || (!text && text_len > 0) || text_len < 0 || n_max < 0 || (!tokens && n_max > 0)) {
            return fail(PM_ERR_INVALID_ARGUMENT, "bad tokenize arguments");
        }
        int32_t n = llama_tokenize(m->vocab, text ? text : "", text_len, tokens, n_max, add_special != 0,
                                   parse_special != 0);
        if (n == INT32_MIN) {
            return fail(PM_ERR_INVALID_ARGUMENT, "text too long to tokenize");
        }
        if (n_out) {
            *n_out = n < 0 ? -n : n;
        }
        if (n < 0) {
            return fail(PM_ERR_BUFFER_TOO_SMALL, std::to_string(-n) + " tokens do not fit in " + std::to_string(n_max));
        }
        return PM_OK;
    });
}

int32_t pm_token_bytes(const pm_model * m, int32_t token, int32_t special, char * buf, int32_t size,
                       int32_t * n_out) {
    return guarded([&]() -> int32_t {
        if (!m || size < 0 || (!buf && size > 0)) {
            return fail(PM_ERR_INVALID_ARGUMENT, "bad token_bytes arguments");
        }
        if (!valid_token(m, token)) {
            return fail(PM_ERR_TOKEN, "token id " + std::to_string(token) + " is outside the vocabulary of " +
                                          std::to_string(llama_vocab_n_tokens(m->vocab)));
        }
        int32_t n = llama_token_to_piece(m->vocab, token, buf, size, 0, special != 0);
        if (n_out) {
            *n_out = n < 0 ? -n : n;
        }
        if (n < 0) {
            return fail(PM_ERR_BUFFER_TOO_SMALL, "token needs " + std::to_string(-n) + " bytes");
        }
        return PM_OK;
    });
}

#ifdef __EMSCRIPTEN__
// A sign of life from inside one long engine call (a prompt batch, a training window on a slow device): the page's
// watchdog tells such a call from a hung worker by it. Module.onBusy (engine-boot.js) limits how often it is told.
EM_JS(void, pm_js_busy, (void), {
    if (Module.onBusy) Module.onBusy();
});

// ggml calls this after every node of a graph, on the thread that asked for the graph; it never aborts. Each node
// is told (a big batch's matrix product alone can take a second on a slow device); JS keeps the time.
static bool on_graph_node(void *) {
    pm_js_busy();
    return false;
}
#endif

// pm_context_new's work, for it and for pm_trainer_new (inside their guarded call).
static int32_t new_context(pm_model * m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, int32_t flags,
                           pm_context ** out) {
    if (!m || !out) {
        return fail(PM_ERR_INVALID_ARGUMENT, "model and out must not be NULL");
    }
    *out = nullptr;
    const int32_t n_ctx_train = m->n_ctx_train;
    if (n_ctx < 0 || n_ctx > n_ctx_train) {
        return fail(PM_ERR_INVALID_ARGUMENT, "n_ctx " + std::to_string(n_ctx) + " is outside 0.." +
                                                 std::to_string(n_ctx_train) + " (the model's trained context)");
    }
    if (n_batch < 0 || n_batch > 8192) {
        return fail(PM_ERR_INVALID_ARGUMENT, "n_batch " + std::to_string(n_batch) + " is outside 0..8192");
    }
    if (n_threads < 1 || n_threads > PM_MAX_THREADS) {
        return fail(PM_ERR_INVALID_ARGUMENT, "n_threads " + std::to_string(n_threads) + " is outside 1.." +
                                                 std::to_string(PM_MAX_THREADS) + " for this build");
    }
    if (flags & ~(PM_CONTEXT_EMBEDDINGS | PM_CONTEXT_KV_F32)) {
        return fail(PM_ERR_INVALID_ARGUMENT, "unknown context flags " + std::to_string(flags));
    }
    llama_context_params params = llama_context_default_params();
    params.n_ctx = n_ctx == 0 ? n_ctx_train : n_ctx;
    params.n_batch = n_batch == 0 ? 512 : n_batch;
    params.n_batch = params.n_batch < params.n_ctx ? params.n_batch : params.n_ctx;
    params.n_ubatch = params.n_batch;  // embeddings need the whole text in one micro-batch
    // an embeddings context decodes up to PM_EMBEDDINGS_MAX_SEQS texts at once, each free to use all of n_ctx;
    // texts have a token each at least, so a batch never holds more texts than n_batch (llama.cpp's limit)
    params.n_seq_max = (flags & PM_CONTEXT_EMBEDDINGS) ? std::min<uint32_t>(PM_EMBEDDINGS_MAX_SEQS, params.n_batch) : 1;
    params.kv_unified = true;
    params.n_threads = n_threads;
    params.n_threads_batch = n_threads;
    params.embeddings = (flags & PM_CONTEXT_EMBEDDINGS) != 0;
    if (flags & PM_CONTEXT_KV_F32) {
        params.type_k = GGML_TYPE_F32;
        params.type_v = GGML_TYPE_F32;
        params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // flash attention casts K and V to F16
    }
    params.no_perf = true;
#ifdef __EMSCRIPTEN__
    params.abort_callback = on_graph_node;
#endif
    // c owns the llama context from the moment it exists: any later failure or exception frees both
    std::unique_ptr<pm_context> c(new pm_context);
    c->owner = m;
    c->ctx = llama_init_from_model(m->model, params);
    if (!c->ctx) {
        return fail(PM_ERR_CONTEXT, "cannot create a context with n_ctx " + std::to_string(params.n_ctx));
    }
    c->n_batch = (int32_t) llama_n_batch(c->ctx);
    c->embeddings = params.embeddings;
    c->alloc_batch(c->n_batch);
    if (n_threads > 1) {
        // one pool of threads for the context's life, instead of new threads for every graph
        ggml_threadpool_params tp = ggml_threadpool_params_default(n_threads);
        c->threadpool = ggml_threadpool_new(&tp);
        if (!c->threadpool) {
            return fail(PM_ERR_CONTEXT, "cannot start " + std::to_string(n_threads) + " threads");
        }
        llama_attach_threadpool(c->ctx, c->threadpool, c->threadpool);
    }
    *out = c.release();
    return PM_OK;
}

int32_t pm_context_new(pm_model * m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, int32_t flags,
                       pm_context ** out) {
    return guarded([&]() -> int32_t { return new_context(m, n_ctx, n_batch, n_threads, flags, out); });
}

void pm_context_free(pm_context * c) { delete c; }

int32_t pm_context_n_ctx(const pm_context * c) { return c ? (int32_t) llama_n_ctx(c->ctx) : -1; }
int32_t pm_context_n_batch(const pm_context * c) { return c ? c->n_batch : -1; }

int32_t pm_decode(pm_context * c, const int32_t * tokens, int32_t n, int32_t pos0, int32_t all_logits) {
    return guarded([&]() -> int32_t {
        if (!c || !tokens || n <= 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "decode needs a context and at least one token");
        }
        const int32_t n_ctx = (int32_t) llama_n_ctx(c->ctx);
        if (pos0 < 0 || (int64_t) pos0 + n > n_ctx) {
            return fail(PM_ERR_NO_SPACE, "positions " + std::to_string(pos0) + ".." + std::to_string((int64_t) pos0 + n) +
                                             " do not fit in the context of " + std::to_string(n_ctx));
        }
        for (int32_t i = 0; i < n; i++) {
            if (!valid_token(c->owner, tokens[i])) {
                return fail(PM_ERR_TOKEN, "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                              " is outside the vocabulary of " + std::to_string(pm_model_n_vocab(c->owner)));
            }
        }
        const int32_t n_vocab = pm_model_n_vocab(c->owner);
        const bool chunked = n > c->n_batch;
        c->last_n = 0;
        c->all_logits.clear();
        for (int32_t start = 0; start < n; start += c->n_batch) {
            const int32_t count = n - start < c->n_batch ? n - start : c->n_batch;
            llama_batch & b = c->batch;
            b.n_tokens = count;
            for (int32_t j = 0; j < count; j++) {
                b.token[j] = tokens[start + j];
                b.pos[j] = pos0 + start + j;
                b.n_seq_id[j] = 1;
                b.seq_id[j][0] = 0;
                b.logits[j] = all_logits || start + j == n - 1;
            }
            const int32_t rc = llama_decode(c->ctx, b);
            if (rc != 0) {
                const int32_t status = rc == 1 ? PM_ERR_NO_SPACE : PM_ERR_DECODE;
                return fail(status, "llama_decode returned " + std::to_string(rc) + " for positions " +
                                        std::to_string(pos0 + start) + ".." + std::to_string(pos0 + start + count));
            }
            if (all_logits && chunked) {
                const float * l = llama_get_logits(c->ctx);
                c->all_logits.insert(c->all_logits.end(), l, l + (size_t) count * n_vocab);
            }
        }
        c->last_n = n;
        c->last_all = all_logits != 0;
        return PM_OK;
    });
}

int32_t pm_decode_one(pm_context * c, int32_t token, int32_t pos) { return pm_decode(c, &token, 1, pos, 0); }

// Two passes: the largest value (NaN if there is one: wasm's f32x4.max propagates NaN, as nan_max does), then where
// it first is. A generated token's logits are read once each way, four at a time in wasm.
static float nan_max(float a, float b) { return (a != a || b != b) ? NAN : (b > a ? b : a); }

int32_t pm_argmax(const float * x, int32_t n) {
    if (!x || n < 1) {
        return -1;
    }
    float m = x[0];
    int32_t i = 1;
#ifdef __wasm_simd128__
    if (n >= 8) {
        v128_t vm = wasm_v128_load(x);
        for (i = 4; i + 4 <= n; i += 4) {
            vm = wasm_f32x4_max(vm, wasm_v128_load(x + i));
        }
        m = nan_max(nan_max(wasm_f32x4_extract_lane(vm, 0), wasm_f32x4_extract_lane(vm, 1)),
                    nan_max(wasm_f32x4_extract_lane(vm, 2), wasm_f32x4_extract_lane(vm, 3)));
    }
#endif
    for (; i < n; ++i) {
        m = nan_max(m, x[i]);
    }
    const bool nan = m != m;
    i = 0;
#ifdef __wasm_simd128__
    const v128_t vm = wasm_f32x4_splat(m);
    for (; i + 4 <= n; i += 4) {
        const v128_t v = wasm_v128_load(x + i);
        if (wasm_v128_any_true(nan ? wasm_f32x4_ne(v, v) : wasm_f32x4_eq(v, vm))) {
            break;
        }
    }
#endif
    for (; i < n; ++i) {
        if (nan ? x[i] != x[i] : x[i] == m) {
            return i;
        }
    }
    return -1;  // not reached: m is one of the values
}

const float * pm_logits(pm_context * c, int32_t i) {
    const float * result = nullptr;
    guarded([&]() -> int32_t {
        if (!c || c->last_n == 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "no decoded tokens to read logits of");
        }
        const int32_t idx = i < 0 ? c->last_n + i : i;
        if (idx < 0 || idx >= c->last_n || (!c->last_all && idx != c->last_n - 1)) {
            return fail(PM_ERR_INVALID_ARGUMENT, "position " + std::to_string(i) + " kept no logits in the last decode");
        }
        if (!c->all_logits.empty()) {
            result = c->all_logits.data() + (size_t) idx * pm_model_n_vocab(c->owner);
        } else {
            // a single batch: read llama.cpp's own buffer (its last output for last-only decodes)
            result = llama_get_logits_ith(c->ctx, c->last_all ? idx : -1);
        }
        return result ? PM_OK : fail(PM_ERR_INTERNAL, "llama.cpp kept no logits for position " + std::to_string(i));
    });
    return result;
}

int32_t pm_kv_remove(pm_context * c, int32_t p0, int32_t p1) {
    return guarded([&]() -> int32_t {
        if (!c || p0 < 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "bad kv_remove arguments");
        }
        if (!llama_memory_seq_rm(llama_get_memory(c->ctx), 0, p0, p1)) {
            return fail(PM_ERR_INTERNAL, "the KV cache refused to remove positions " + std::to_string(p0) + ".." +
                                             std::to_string(p1));
        }
        return PM_OK;
    });
}

void pm_kv_clear(pm_context * c) {
    if (c) {
        llama_memory_clear(llama_get_memory(c->ctx), true);
    }
}

int32_t pm_kv_pos_max(pm_context * c) { return c ? llama_memory_seq_pos_max(llama_get_memory(c->ctx), 0) : -1; }

int32_t pm_embeddings(pm_context * c, const int32_t * tokens, const int32_t * lengths, int32_t n_seqs,
                      float * out) {
    return guarded([&]() -> int32_t {
        if (!c || !tokens || !lengths || !out) {
            return fail(PM_ERR_INVALID_ARGUMENT, "embeddings need a context, tokens, lengths and out");
        }
        if (n_seqs < 1 || n_seqs > PM_EMBEDDINGS_MAX_SEQS) {
            return fail(PM_ERR_INVALID_ARGUMENT, std::to_string(n_seqs) + " texts: a batch holds 1.." +
                                                     std::to_string(PM_EMBEDDINGS_MAX_SEQS));
        }
        if (!c->embeddings) {
            return fail(PM_ERR_INVALID_ARGUMENT, "the context was not made for embeddings (PM_CONTEXT_EMBEDDINGS)");
        }
        int64_t n = 0;
        for (int32_t s = 0; s < n_seqs; s++) {
            if (lengths[s] < 1) {
                return fail(PM_ERR_INVALID_ARGUMENT, "text " + std::to_string(s) + " has no tokens");
            }
            n += lengths[s];
        }
        if (n > c->n_batch) {
            return fail(PM_ERR_INVALID_ARGUMENT, std::to_string(n) + " tokens exceed the batch of " +
                                                     std::to_string(c->n_batch) + "; split the texts");
        }
        for (int64_t i = 0; i < n; i++) {
            if (!valid_token(c->owner, tokens[i])) {
                return fail(PM_ERR_TOKEN, "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
            }
        }
        llama_memory_clear(llama_get_memory(c->ctx), true);
        llama_batch & b = c->batch;
        b.n_tokens = (int32_t) n;
        for (int32_t s = 0, j = 0; s < n_seqs; s++) {
            for (int32_t p = 0; p < lengths[s]; p++, j++) {
                b.token[j] = tokens[j];
                b.pos[j] = p;
                b.n_seq_id[j] = 1;
                b.seq_id[j][0] = s;
                b.logits[j] = 1;
            }
        }
        const llama_model * model = c->owner->model;
        const int32_t rc = llama_model_has_encoder(model) && !llama_model_has_decoder(model)
                               ? llama_encode(c->ctx, b) : llama_decode(c->ctx, b);
        c->last_n = 0;
        if (rc != 0) {
            return fail(PM_ERR_DECODE, "computing embeddings failed with code " + std::to_string(rc));
        }
        const int32_t n_embd = llama_model_n_embd(model);
        const bool pooled = llama_pooling_type(c->ctx) != LLAMA_POOLING_TYPE_NONE;
        for (int32_t s = 0, j = 0; s < n_seqs; s++) {
            float * row = out + (size_t) s * n_embd;
            if (pooled) {
                const float * e = llama_get_embeddings_seq(c->ctx, s);
                if (!e) {
                    return fail(PM_ERR_INTERNAL, "llama.cpp returned no embedding for text " + std::to_string(s));
                }
                std::copy(e, e + n_embd, row);
                j += lengths[s];
                continue;
            }
            // a model without a pooling layer: average the text's token embeddings (its last hidden states)
            std::fill(row, row + n_embd, 0.0f);
            for (int32_t p = 0; p < lengths[s]; p++, j++) {
                const float * e = llama_get_embeddings_ith(c->ctx, j);
                if (!e) {
                    return fail(PM_ERR_INTERNAL, "no embedding for token " + std::to_string(j));
                }
                for (int32_t k = 0; k < n_embd; k++) {
                    row[k] += e[k] / lengths[s];
                }
            }
        }
        return PM_OK;
    });
}

}  // extern "C"

// ---- fine-tuning ----

namespace {

// llama.cpp's param filter: a block's tensors from first_layer on, and the output norm. (The token embeddings
// are never trained by llama.cpp; the output matrix is left frozen: it is the token embeddings when tied.)
bool trainable(const ggml_tensor * t, void * userdata) {
    pm_trainer * tr = static_cast<pm_trainer *>(userdata);
    const char * name = ggml_get_name(t);
    int layer = -1;
    const bool chosen = strcmp(name, "output_norm.weight") == 0 ||
                        (sscanf(name, "blk.%d.", &layer) == 1 && layer >= tr->first_layer);
    if (chosen) {
        tr->params.push_back(const_cast<ggml_tensor *>(t));
    }
    return chosen;
}

int32_t ftype_of(const std::string & type, llama_ftype * out) {
    static const std::pair<const char *, llama_ftype> types[] = {
        {"F32", LLAMA_FTYPE_ALL_F32},       {"F16", LLAMA_FTYPE_MOSTLY_F16},   {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
        {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0}, {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    };
    for (const auto & t : types) {
        if (type == t.first) {
            *out = t.second;
            return PM_OK;
        }
    }
    return fail(PM_ERR_INVALID_ARGUMENT, "unknown weight type '" + type + "': F32, F16, Q8_0, Q4_0 or Q4_1");
}

}  // namespace

extern "C" {

int32_t pm_model_convert(const char * path_in, const char * path_out, const char * type, int32_t n_threads) {
    return guarded([&]() -> int32_t {
        if (!path_in || !path_out || !type) {
            return fail(PM_ERR_INVALID_ARGUMENT, "path_in, path_out and type must not be NULL");
        }
        if (n_threads < 1 || n_threads > PM_MAX_THREADS) {
            return fail(PM_ERR_INVALID_ARGUMENT, "n_threads " + std::to_string(n_threads) + " is outside 1.." +
                                                     std::to_string(PM_MAX_THREADS));
        }
        llama_model_quantize_params params = llama_model_quantize_default_params();
        if (ftype_of(type, &params.ftype) != PM_OK) {
            return PM_ERR_INVALID_ARGUMENT;
        }
#ifdef __EMSCRIPTEN__
        n_threads = 1;  // the quantizer starts std::threads per call; the page's module runs it on its own thread
#endif
        params.nthread = n_threads;
        params.allow_requantize = true;  // a quantized input is dequantized first (to F32, or to be requantized)
        if (llama_model_quantize(path_in, path_out, &params) != 0) {
            remove(path_out);  // nothing half-written stays behind
            return fail(PM_ERR_LOAD, std::string("cannot convert '") + path_in + "' to " + type);
        }
        return PM_OK;
    });
}

int32_t pm_model_source(const pm_model * m, const char ** out) {
    return guarded([&]() -> int32_t {
        if (!m || !out) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model and out must not be NULL");
        }
        *out = m->source.empty() ? nullptr : m->source.c_str();
        return *out ? PM_OK : fail(PM_ERR_NOT_FOUND, "the model was loaded from a buffer whose copy is gone");
    });
}

int32_t pm_model_load_trainable(const char * path, pm_model ** out) { return load_by_path(path, true, out); }

int32_t pm_trainer_new(pm_model * m, int32_t n_ctx, int32_t n_layers, int32_t n_threads, pm_trainer ** out) {
    return guarded([&]() -> int32_t {
        if (!m || !out) {
            return fail(PM_ERR_INVALID_ARGUMENT, "model and out must not be NULL");
        }
        *out = nullptr;
        if (!m->writable) {
            return fail(PM_ERR_INVALID_ARGUMENT, "the model's weights are used in place, read-only: load it with "
                                                 "pm_model_load_trainable to train it");
        }
        const int32_t n_layer = llama_model_n_layer(m->model);
        if (n_layers < 1 || n_layers > n_layer) {
            return fail(PM_ERR_INVALID_ARGUMENT, "n_layers " + std::to_string(n_layers) + " is outside 1.." +
                                                     std::to_string(n_layer) + " (the model's blocks)");
        }
        // llama.cpp rounds a context up to a multiple of 256 tokens, and a window must fill the context
        const int32_t most = std::min(m->n_ctx_train, 4096) / 256 * 256;
        if (most < 256) {
            return fail(PM_ERR_INVALID_ARGUMENT, "the model's trained context (" + std::to_string(m->n_ctx_train) +
                                                     " tokens) is shorter than a training window (256)");
        }
        if (n_ctx < 256 || n_ctx % 256 != 0 || n_ctx > most) {
            return fail(PM_ERR_INVALID_ARGUMENT, "n_ctx " + std::to_string(n_ctx) + " is not a multiple of 256 in "
                                                     "256.." + std::to_string(most));
        }
        std::unique_ptr<pm_trainer> t(new pm_trainer);
        t->n_ctx = n_ctx;
        t->first_layer = n_layer - n_layers;
        // llama.cpp trains F32 tensors only (and silently skips others): every tensor of the chosen blocks must be
        gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/nullptr};
        std::unique_ptr<gguf_context, void (*)(gguf_context *)> g(gguf_init_from_file(m->source.c_str(), gp),
                                                                   gguf_free);
        if (!g) {
            return fail(PM_ERR_LOAD, "cannot read the tensor list of '" + m->source + "'");
        }
        for (int64_t i = 0; i < gguf_get_n_tensors(g.get()); i++) {
            const char * name = gguf_get_tensor_name(g.get(), i);
            int layer = -1;
            if (sscanf(name, "blk.%d.", &layer) == 1 && layer >= t->first_layer &&
                gguf_get_tensor_type(g.get(), i) != GGML_TYPE_F32) {
                return fail(PM_ERR_INVALID_ARGUMENT, std::string("'") + name + "' is " +
                            ggml_type_name(gguf_get_tensor_type(g.get(), i)) + ", not F32: llama.cpp trains F32 "
                            "weights only; convert the model to F32 first (pm_model_convert)");
            }
        }
        // the whole window in one micro-batch: only then do K and V get gradients (llama.cpp reads them from the
        // micro-batch, not from the cache); F32 KV, since the backward pass has no F16 for it
        if (new_context(m, n_ctx, n_ctx, n_threads, PM_CONTEXT_KV_F32, &t->ctx) != PM_OK) {
            return PM_ERR_CONTEXT;
        }
        t->opt = ggml_opt_get_default_optimizer_params(nullptr);
        llama_opt_params lopt{};
        lopt.n_ctx_train = (uint32_t) n_ctx;
        lopt.param_filter = trainable;
        lopt.param_filter_ud = t.get();
        lopt.get_opt_pars = ggml_opt_get_constant_optimizer_params;  // hands back *ud: t->opt as it is then
        lopt.get_opt_pars_ud = &t->opt;
        lopt.optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
        llama_opt_init(t->ctx->ctx, m->model, lopt);
        t->data = ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, n_ctx, n_ctx, 1, 1);
        t->result = ggml_opt_result_init();
        *out = t.release();
        return PM_OK;
    });
}

void pm_trainer_free(pm_trainer * t) {
    guarded([&]() -> int32_t {
        delete t;
        return PM_OK;
    });
}

double pm_trainer_n_params(const pm_trainer * t) {
    if (!t) {
        return 0;
    }
    double n = 0;
    for (const ggml_tensor * p : t->params) {
        n += (double) ggml_nelements(p);
    }
    return n;
}

int32_t pm_trainer_step(pm_trainer * t, const int32_t * tokens, const uint8_t * counted, int32_t train, double lr,
                        double wd, float * loss) {
    return guarded([&]() -> int32_t {
        if (!t || !tokens || !loss) {
            return fail(PM_ERR_INVALID_ARGUMENT, "trainer, tokens and loss must not be NULL");
        }
        if (!(lr >= 0 && lr < 1) || !(wd >= 0 && wd < 1)) {
            return fail(PM_ERR_INVALID_ARGUMENT, "the learning rate and the weight decay must be in [0, 1)");
        }
        const pm_model * m = t->ctx->owner;
        for (int32_t i = 0; i <= t->n_ctx; i++) {
            if (!valid_token(m, tokens[i])) {
                return fail(PM_ERR_TOKEN, "token " + std::to_string(tokens[i]) + " at " + std::to_string(i) +
                                              " is outside the vocabulary");
            }
        }
        int32_t * inputs = (int32_t *) ggml_opt_dataset_data(t->data)->data;
        int32_t * targets = (int32_t *) ggml_opt_dataset_labels(t->data)->data;
        std::copy(tokens, tokens + t->n_ctx, inputs);
        int32_t n_counted = 0;
        for (int32_t i = 0; i < t->n_ctx; i++) {
            const bool counts = !counted || counted[i];
            targets[i] = counts ? tokens[i + 1] : -1;  // -1: no label (the patched llama.cpp leaves its row zero)
            n_counted += counts;
        }
        if (n_counted == 0) {
            return fail(PM_ERR_INVALID_ARGUMENT, "no token of the window is counted: nothing to train on");
        }
        t->opt.adamw.alpha = (float) lr;
        t->opt.adamw.wd = (float) wd;
        ggml_opt_result_reset(t->result);
        // one data point: trained on (split 1) or only evaluated (split 0)
        llama_opt_epoch(t->ctx->ctx, t->data, t->result, t->result, train ? 1 : 0, nullptr, nullptr);
        double mean = 0, unc = 0;
        ggml_opt_result_loss(t->result, &mean, &unc);
        if (!std::isfinite(mean)) {
            return fail(PM_ERR_DECODE, "the loss is not a finite number (the learning rate may be too high)");
        }
        *loss = (float) (mean * t->n_ctx / n_counted);  // llama.cpp divides by every row, counted or not
        return PM_OK;
    });
}

int32_t pm_trainer_checkpoint(pm_trainer * t, int32_t save) {
    return guarded([&]() -> int32_t {
        if (!t) {
            return fail(PM_ERR_INVALID_ARGUMENT, "trainer must not be NULL");
        }
        if (save) {
            std::vector<std::vector<char>> copy(t->params.size());
            for (size_t i = 0; i < t->params.size(); i++) {
                copy[i].resize(ggml_nbytes(t->params[i]));
                ggml_backend_tensor_get(t->params[i], copy[i].data(), 0, copy[i].size());
            }
            t->saved = std::move(copy);
            return PM_OK;
        }
        if (t->saved.size() != t->params.size()) {
            return fail(PM_ERR_NOT_FOUND, "no checkpoint was saved");
        }
        for (size_t i = 0; i < t->params.size(); i++) {
            ggml_backend_tensor_set(t->params[i], t->saved[i].data(), 0, t->saved[i].size());
        }
        return PM_OK;
    });
}

int32_t pm_trainer_write(const pm_trainer * t, const char * path) {
    return guarded([&]() -> int32_t {
        if (!t || !path) {
            return fail(PM_ERR_INVALID_ARGUMENT, "trainer and path must not be NULL");
        }
        gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/nullptr};
        std::unique_ptr<gguf_context, void (*)(gguf_context *)> g(gguf_init_from_file(path, gp), gguf_free);
        if (!g) {
            return fail(PM_ERR_LOAD, std::string("'") + path + "' is not a GGUF file");
        }
        // check every tensor first, so that a mismatch leaves the file as it was
        std::vector<size_t> offsets;
        for (const ggml_tensor * p : t->params) {
            const int64_t i = gguf_find_tensor(g.get(), ggml_get_name(p));
            if (i < 0 || gguf_get_tensor_type(g.get(), i) != GGML_TYPE_F32 ||
                gguf_get_tensor_size(g.get(), i) != ggml_nbytes(p)) {
                return fail(PM_ERR_INVALID_ARGUMENT, std::string("'") + path + "' is not the model being trained: "
                            "its tensor '" + ggml_get_name(p) + "' is missing or not F32 of the same size");
            }
            offsets.push_back(gguf_get_data_offset(g.get()) + gguf_get_tensor_offset(g.get(), i));
        }
        std::unique_ptr<FILE, int (*)(FILE *)> f(fopen(path, "r+b"), fclose);
        if (!f) {
            return fail(PM_ERR_INTERNAL, std::string("cannot open '") + path + "' for writing: " + strerror(errno));
        }
        std::vector<char> bytes;
        for (size_t k = 0; k < t->params.size(); k++) {
            bytes.resize(ggml_nbytes(t->params[k]));
            ggml_backend_tensor_get(t->params[k], bytes.data(), 0, bytes.size());
            if (fseek(f.get(), (long) offsets[k], SEEK_SET) != 0 ||
                fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
                return fail(PM_ERR_INTERNAL, std::string("writing '") + path + "' failed: " + strerror(errno));
            }
        }
        if (fflush(f.get()) != 0) {
            return fail(PM_ERR_INTERNAL, std::string("writing '") + path + "' failed: " + strerror(errno));
        }
        return PM_OK;
    });
}

}  // extern "C"
