/* pocketmind's C API over llama.cpp: the one surface both the WebAssembly modules and the native shared
 * library export. Every call that can fail returns a status (PM_OK or a negative PM_ERR_*) and leaves a readable
 * message for pm_last_error(); nothing here aborts the process on bad input.
 *
 * Threading: a model or context is used by one caller thread at a time (the Python glue owns them).
 */
#ifndef POCKETMIND_H
#define POCKETMIND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum pm_status {
    PM_OK                    =  0,
    PM_ERR_INVALID_ARGUMENT  = -1, /* NULL handle, bad size, out-of-range value */
    PM_ERR_LOAD              = -2, /* the bytes are not a model llama.cpp can load */
    PM_ERR_CONTEXT           = -3, /* the context could not be created (memory, n_ctx) */
    PM_ERR_DECODE            = -4, /* llama_decode failed */
    PM_ERR_TOKEN             = -5, /* a token id outside the vocabulary */
    PM_ERR_NO_SPACE          = -6, /* the KV cache is full: remove tokens or use a larger n_ctx */
    PM_ERR_BUFFER_TOO_SMALL  = -7, /* *n_out tells the size needed */
    PM_ERR_NOT_FOUND         = -8, /* no such metadata key / no chat template */
    PM_ERR_INTERNAL          = -9, /* an unexpected exception inside llama.cpp */
};

typedef struct pm_model   pm_model;
typedef struct pm_context pm_context;
typedef struct pm_adapter pm_adapter;

/* Message of the last failed call on this thread ("" if none). Valid until the next call. */
const char * pm_last_error(void);
/* Library version and the llama.cpp it was built from. */
const char * pm_version(void);
/* 0 = silent, 1 = errors, 2 = + warnings (default), 3 = + info, 4 = + debug; llama.cpp's log goes to stderr. */
void pm_set_log_level(int32_t level);

/* Memory for model bytes and other arguments: 64-byte aligned (NULL when out of memory or size is 0). */
void * pm_buffer_alloc(size_t size);
void   pm_buffer_free(void * ptr);

/* ---- models ---- */

/* Load a GGUF file by path. */
int32_t pm_model_load_file(const char * path, pm_model ** out);
/* Load a GGUF held in memory. In WebAssembly the weights are used in place (no copy), so the buffer must stay
 * alive and unchanged until pm_model_free (allocate it with pm_buffer_alloc); natively the bytes are copied. */
int32_t pm_model_load_buffer(const void * data, size_t size, pm_model ** out);
void    pm_model_free(pm_model * model);

int32_t  pm_model_n_vocab(const pm_model * model);
int32_t  pm_model_n_ctx_train(const pm_model * model);
int32_t  pm_model_n_embd(const pm_model * model);
double   pm_model_n_params(const pm_model * model);  /* doubles: exact below 2^53, no 64-bit ints in the wasm ABI */
double   pm_model_size(const pm_model * model);      /* bytes of weights */
int32_t  pm_model_token_bos(const pm_model * model); /* -1 when the model has none */
int32_t  pm_model_token_eos(const pm_model * model);
int32_t  pm_model_token_eot(const pm_model * model);
int32_t  pm_model_add_bos(const pm_model * model);   /* 1 if tokenize(add_special) prepends BOS */
int32_t  pm_model_is_eog(const pm_model * model, int32_t token); /* end of generation (EOS, EOT, ...) */

/* Metadata as strings (arrays are summarised by llama.cpp). The string calls write a NUL-terminated string of
 * at most size bytes and set *n_out to its full length; PM_ERR_BUFFER_TOO_SMALL when it did not fit. */
int32_t pm_model_meta_count(const pm_model * model);
int32_t pm_model_meta_key(const pm_model * model, int32_t i, char * buf, int32_t size, int32_t * n_out);
int32_t pm_model_meta_value(const pm_model * model, int32_t i, char * buf, int32_t size, int32_t * n_out);
int32_t pm_model_meta_get(const pm_model * model, const char * key, char * buf, int32_t size, int32_t * n_out);
int32_t pm_model_desc(const pm_model * model, char * buf, int32_t size, int32_t * n_out);
/* The model's default chat template (tokenizer.chat_template) or NULL with PM_ERR_NOT_FOUND. */
int32_t pm_model_chat_template(const pm_model * model, const char ** out);

/* ---- LoRA adapters ---- */

/* A LoRA adapter (a GGUF with general.type = "adapter", adapter.type = "lora") loaded for one model: its tensors
 * are read into memory of their own, so the file or buffer is not needed after the load. Refused (PM_ERR_LOAD,
 * with the reason) when the bytes are not a GGUF, are cut short, are not a LoRA adapter, or were made for another
 * architecture or another base model (a tensor the model lacks, or of another shape). */
int32_t pm_adapter_load_file(pm_model * model, const char * path, pm_adapter ** out);
int32_t pm_adapter_load_buffer(pm_model * model, const void * data, size_t size, pm_adapter ** out);
/* Also takes the adapter off every context using it. After pm_model_free (which releases the model's adapters
 * along with it) this only frees the handle. */
void    pm_adapter_free(pm_adapter * adapter);
/* Metadata of the adapter's GGUF as a string (e.g. "adapter.lora.alpha"); same convention as pm_model_meta_get. */
int32_t pm_adapter_meta_get(const pm_adapter * adapter, const char * key, char * buf, int32_t size, int32_t * n_out);
/* The adapters a context applies, each with its scale (the weights act as W + scale * alpha / rank * B A),
 * replacing those set before; n = 0 removes them all. Each adapter must have been loaded for the context's model,
 * and appear once. The KV cache is left as it is: positions already decoded keep what they were computed with. */
int32_t pm_context_set_adapters(pm_context * ctx, pm_adapter * const * adapters, const float * scales, int32_t n);

/* ---- tokens ---- */

/* Tokenize text_len bytes of UTF-8. add_special: BOS/EOS as the model asks; parse_special: "<|im_start|>" and
 * the like become their control tokens instead of plain text. Writes at most n_max ids; *n_out is the count
 * (the count needed, with PM_ERR_BUFFER_TOO_SMALL, when n_max was too small). */
int32_t pm_tokenize(const pm_model * model, const char * text, int32_t text_len, int32_t add_special,
                    int32_t parse_special, int32_t * tokens, int32_t n_max, int32_t * n_out);
/* The raw bytes of one token (may be part of a UTF-8 character); special: render control tokens as text. */
int32_t pm_token_bytes(const pm_model * model, int32_t token, int32_t special, char * buf, int32_t size,
                       int32_t * n_out);

/* ---- contexts ---- */

enum pm_context_flags {
    PM_CONTEXT_EMBEDDINGS = 1, /* compute pooled embeddings */
    PM_CONTEXT_KV_F32     = 2, /* attention in F32 (F32 KV cache, no flash attention): twice the KV memory;
                                  for parity checks, where F16 rounding would amplify last-bit differences */
};

/* n_ctx: 0 = the model's trained context; n_batch: 0 = 512; n_threads >= 1; flags: pm_context_flags. */
int32_t pm_context_new(pm_model * model, int32_t n_ctx, int32_t n_batch, int32_t n_threads, int32_t flags,
                       pm_context ** out);
void    pm_context_free(pm_context * ctx);
int32_t pm_context_n_ctx(const pm_context * ctx);
int32_t pm_context_n_batch(const pm_context * ctx);

/* Run n tokens of sequence 0 at positions pos0 .. pos0+n-1 (split into n_batch chunks). all_logits: keep the
 * logits of every position, else only of the last one. The KV cache must hold positions < pos0 already. */
int32_t pm_decode(pm_context * ctx, const int32_t * tokens, int32_t n, int32_t pos0, int32_t all_logits);
/* pm_decode of the one token at pos, its logits kept: a generation's step, with no token buffer to fill first (in the
 * browser each write into the module's memory from Python is a trip through the JS bridge). */
int32_t pm_decode_one(pm_context * ctx, int32_t token, int32_t pos);
/* Logits (n_vocab floats, no copy) of position i of the last pm_decode call, or of its last token for i = -1;
 * NULL with an error if that position kept no logits. Valid until the next decode. */
const float * pm_logits(pm_context * ctx, int32_t i);
/* The index of the largest of x[0 .. n-1] as numpy's argmax finds it (the first of equal largest values, or the first
 * NaN if there is one); -1 for n < 1. Greedy decoding reads its token with it where copying the logits out of the
 * library costs more (the browser, the JS and the Python paths alike). */
int32_t pm_argmax(const float * x, int32_t n);

/* Forget positions [p0, p1) of sequence 0 (p1 < 0: to the end), e.g. to keep a chat's shared prompt prefix. */
int32_t pm_kv_remove(pm_context * ctx, int32_t p0, int32_t p1);
void    pm_kv_clear(pm_context * ctx);
/* Highest position held in the KV cache, -1 if empty. */
int32_t pm_kv_pos_max(pm_context * ctx);

/* Pooled embeddings of n_seqs texts decoded as one batch (context made with PM_CONTEXT_EMBEDDINGS; the cache is
 * cleared first). tokens holds the texts one after another, lengths[i] tokens for text i; their sum must fit
 * n_batch and n_seqs <= PM_EMBEDDINGS_MAX_SEQS. out (caller memory) receives n_seqs * n_embd floats, row i for
 * text i. Each text attends only to itself, but the batch's matrix products are shared: a text's embedding can
 * differ in the last bits with other texts beside it, so callers that compare runs group texts the same way. */
enum { PM_EMBEDDINGS_MAX_SEQS = 64 };
int32_t pm_embeddings(pm_context * ctx, const int32_t * tokens, const int32_t * lengths, int32_t n_seqs,
                      float * out);

/* ---- fine-tuning (llama.cpp's optimizer, AdamW, on F32 weights) ---- */

typedef struct pm_trainer pm_trainer;

/* Write the GGUF model at path_in to path_out with its weights of type `type`: "F32" (every quantized tensor
 * dequantized: what training needs), "F16", "Q8_0", "Q4_0" or "Q4_1" (llama.cpp's quantizer picks the type of a
 * few tensors itself, as llama-quantize does). Metadata (chat template, context length) is kept. */
int32_t pm_model_convert(const char * path_in, const char * path_out, const char * type, int32_t n_threads);
/* The file llama.cpp read the model from: the path given to pm_model_load_file, or in WebAssembly the file that
 * stands for a loaded buffer; PM_ERR_NOT_FOUND for a buffer natively (its copy is gone after the load). */
int32_t pm_model_source(const pm_model * model, const char ** out);
/* Load a GGUF whose weights can be trained: read into memory of the model's own (writable), not used in place. */
int32_t pm_model_load_trainable(const char * path, pm_model ** out);

/* Training state for a model loaded with pm_model_load_trainable, whose trained layers are F32: a context of
 * n_ctx tokens per training window (a multiple of 256, llama.cpp's context granule; F32 KV cache), AdamW, and as trainable parameters the weights of the last
 * n_layers blocks and the output norm. llama.cpp sets the llama_model's trained context to n_ctx while training
 * (pm_model_n_ctx_train keeps the loaded value, and pm_context_new still allows it). */
int32_t pm_trainer_new(pm_model * model, int32_t n_ctx, int32_t n_layers, int32_t n_threads, pm_trainer ** out);
void    pm_trainer_free(pm_trainer * trainer);
double  pm_trainer_n_params(const pm_trainer * trainer);  /* trainable parameters */
/* One window: tokens holds n_ctx + 1 ids; the model reads tokens[0..n_ctx) and predicts tokens[1..n_ctx].
 * counted: NULL, or n_ctx flags, counted[i] != 0 where predicting tokens[i + 1] counts (a task's answer, say):
 * the others add neither loss nor gradient (our patch train-loss-counts-only-labelled-tokens), and at least one
 * must count. train: one AdamW step (learning rate lr, weight decay wd) on the mean cross-entropy of the counted
 * tokens; 0: only the loss. *loss: that mean, per counted token (before the step). */
int32_t pm_trainer_step(pm_trainer * trainer, const int32_t * tokens, const uint8_t * counted, int32_t train,
                        double lr, double wd, float * loss);
/* save = 1: copy the trainable weights aside (a checkpoint); 0: put the checkpoint's weights back. */
int32_t pm_trainer_checkpoint(pm_trainer * trainer, int32_t save);
/* Write the trainable weights, as they are now, into the GGUF at path (in place), which must be the F32 file the
 * model was loaded from (or a copy of it): the rest of that file, metadata included, is unchanged. */
int32_t pm_trainer_write(const pm_trainer * trainer, const char * path);

#ifdef __cplusplus
}
#endif

#endif /* POCKETMIND_H */
