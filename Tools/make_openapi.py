#!/usr/bin/env python3
"""Write Sources/Serving/openapi.json, the OpenAPI 3.0 document of `deberta serve` (GET /openapi.json).

Run from anywhere with any python3 after changing a route or its JSON: `Tools/make_openapi.py`. The schemas
follow Text Embeddings Inference's names; Tools/schemathesis.sh checks the server against the document.
"""
import json
from pathlib import Path
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def arr(s, **k): return {"type": "array", "items": s, **k}
S = {"type": "string"}
T = {"type": "string", "minLength": 1}
B = {"type": "boolean", "nullable": True}
I = {"type": "integer"}
NUM = {"type": "number", "nullable": True, "description": "null when the value is not finite"}
def obj(props, required=(), desc=None, extra=True):
    o = {"type": "object", "properties": props}
    if required: o["required"] = list(required)
    if desc: o["description"] = desc
    return o
schemas = {
 "ErrorResponse": obj({"error": S, "error_type": {"type": "string", "enum": ["Validation", "Tokenizer", "Overloaded", "Backend", "Empty"]}}, ["error", "error_type"]),
 "Input": {"oneOf": [T, arr(T, minItems=1, maxItems=32)], "description": "a text, or a list of texts"},
 "PredictInput": {"description": "a text, a pair [text, text], or a batch of texts and pairs ([[text], [text, text], ...])",
   "oneOf": [T, arr(T, minItems=2, maxItems=2), arr({"oneOf": [T, arr(T, minItems=1, maxItems=2)]}, minItems=1, maxItems=32)]},
 "PredictRequest": obj({"inputs": ref("PredictInput"), "raw_scores": {**B, "default": False, "description": "the logits instead of the probabilities"},
                        "truncate": {**B, "default": False, "description": "truncate inputs over max_input_length instead of answering 422"}}, ["inputs"]),
 "Prediction": obj({"label": S, "score": NUM}, ["label", "score"]),
 "PredictResponse": {"anyOf": [arr(ref("Prediction")), arr(arr(ref("Prediction")))],
                     "description": "the labels sorted by score; a list of such lists for a batch"},
 "EmbedRequest": obj({"inputs": ref("Input"), "normalize": {**B, "default": True}, "truncate": {**B, "default": False}}, ["inputs"]),
 "EmbedResponse": arr(arr(NUM), description="one pooled vector per text (--pooling mean|cls)"),
 "RerankRequest": obj({"query": T, "texts": arr(T, minItems=1, maxItems=32), "raw_scores": {**B, "default": False}, "return_text": {**B, "default": False},
                       "truncate": {**B, "default": False}}, ["query", "texts"]),
 "Rank": obj({"index": {"type": "integer", "minimum": 0}, "score": NUM, "text": S}, ["index", "score"]),
 "RerankResponse": arr(ref("Rank"), description="the texts sorted by score: the sigmoid of a one-label cross-encoder's logit, or the entailment probability of an NLI model"),
 "TokenizeRequest": obj({"inputs": ref("Input"), "add_special_tokens": {**B, "default": True}}, ["inputs"]),
 "SimpleToken": obj({"id": I, "text": S, "special": {"type": "boolean"},
                     "start": {"type": "integer", "nullable": True, "description": "first character (Unicode scalar); null for special tokens"},
                     "stop": {"type": "integer", "nullable": True}}, ["id", "text", "special", "start", "stop"]),
 "TokenizeResponse": arr(arr(ref("SimpleToken"))),
 "OpenAICompatRequest": obj({"input": ref("Input"), "model": {"type": "string", "nullable": True},
                             "encoding_format": {"type": "string", "enum": ["float", "base64"], "nullable": True, "default": "float"},
                             "user": {"type": "string", "nullable": True}}, ["input"]),
 "OpenAICompatEmbedding": obj({"object": {"type": "string", "enum": ["embedding"]}, "embedding": {"oneOf": [arr(NUM), S]}, "index": I},
                              ["object", "embedding", "index"]),
 "OpenAICompatResponse": obj({"object": {"type": "string", "enum": ["list"]}, "data": arr(ref("OpenAICompatEmbedding")), "model": S,
                              "usage": obj({"prompt_tokens": I, "total_tokens": I}, ["prompt_tokens", "total_tokens"])},
                             ["object", "data", "model", "usage"]),
 "FillMaskRequest": obj({"inputs": {"type": "string", "minLength": 1, "description": "a text with one or more [MASK] tokens"},
                         "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5, "nullable": True},
                         "decoder": {"type": "string", "enum": ["emd", "mlm"], "nullable": True,
                                     "description": "the Enhanced Mask Decoder (the default where the model has one) or the plain head"}}, ["inputs"]),
 "MaskPrediction": obj({"score": NUM, "token": I, "token_str": S, "sequence": S}, ["score", "token", "token_str", "sequence"]),
 "FillMaskResponse": {"anyOf": [arr(ref("MaskPrediction")), arr(arr(ref("MaskPrediction")))],
                      "description": "as transformers' fill-mask pipeline: a list for one mask, a list of lists for several"},
 "ZeroShotRequest": obj({"inputs": T, "candidate_labels": {"oneOf": [T, arr(T, minItems=1, maxItems=32)], "description": "a list, or one comma-separated string"},
                         "hypothesis_template": {"type": "string", "nullable": True, "default": "This example is {}."},
                         "multi_label": {**B, "default": False}}, ["inputs", "candidate_labels"]),
 "ZeroShotResponse": obj({"sequence": S, "labels": arr(S), "scores": arr(NUM)}, ["sequence", "labels", "scores"]),
 "NERRequest": obj({"inputs": T, "aggregation_strategy": {"type": "string", "enum": ["none", "simple", "first", "average", "max"], "nullable": True, "default": "simple"},
                    "stride": {"type": "integer", "minimum": 0, "maximum": 100000, "nullable": True}}, ["inputs"]),
 "Entity": obj({"entity_group": S, "entity": S, "index": I, "score": NUM, "word": S, "start": I, "end": I}, ["score", "word", "start", "end"],
               desc="entity_group for aggregated entities; entity and index per token with aggregation_strategy none"),
 "NERResponse": arr(ref("Entity")),
 "QARequest": obj({"question": T, "context": T,
                   "max_seq_len": {"type": "integer", "minimum": 4, "maximum": 1000000, "default": 384, "nullable": True},
                   "doc_stride": {"type": "integer", "minimum": 0, "maximum": 1000000, "nullable": True},
                   "max_answer_len": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 15, "nullable": True},
                   "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1, "nullable": True},
                   "handle_impossible_answer": {**B, "default": False}, "align_to_words": {**B, "default": True}}, ["question", "context"]),
 "Answer": obj({"score": NUM, "start": I, "end": I, "answer": S}, ["score", "start", "end", "answer"]),
 "QAResponse": {"anyOf": [ref("Answer"), arr(ref("Answer"))], "description": "one answer, or a list when top_k > 1 gives several"},
 "Info": obj({"model_id": S, "model_sha": {"type": "string", "nullable": True},
              "model_dtype": {"type": "string", "description": "float32, bfloat16, int8 or q4"},
              "model_type": {"type": "object", "description": "one of classifier, reranker, token_classifier (id2label, label2id), question_answering, masked_lm or embedding (pooling)"},
              "max_concurrent_requests": I, "max_input_length": I, "max_batch_tokens": I,
              "max_batch_requests": {"type": "integer", "nullable": True}, "max_client_batch_size": I, "payload_limit": I, "version": S},
             ["model_id", "model_dtype", "model_type", "max_concurrent_requests", "max_input_length", "max_batch_tokens", "max_client_batch_size", "version"]),
}
def err(desc): return {"description": desc, "content": {"application/json": {"schema": ref("ErrorResponse")}}}
ERRS = {"413": err("the body is over --payload-limit"), "422": err("Validation (bad JSON, wrong types, too long with truncate false, a task this model has no head for) or Empty"),
        "429": err("Overloaded: --max-concurrent-requests are in progress"), "500": err("Backend")}
def post(op, summary, req, resp, desc=""):
    return {"post": {"operationId": op, "summary": summary, "description": desc,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": ref(req)}}},
                     "responses": {"200": {"description": "the result", "content": {"application/json": {"schema": ref(resp)}}}, **ERRS}}}
paths = {
 "/predict": post("predict", "Classify texts or text pairs (sequence-classification models)", "PredictRequest", "PredictResponse"),
 "/embed": post("embed", "Pooled embeddings", "EmbedRequest", "EmbedResponse"),
 "/rerank": post("rerank", "Rank texts against a query (one-label cross-encoders and NLI models)", "RerankRequest", "RerankResponse"),
 "/tokenize": post("tokenize", "Tokens with ids and character offsets", "TokenizeRequest", "TokenizeResponse"),
 "/v1/embeddings": post("openai_embed", "Embeddings in OpenAI's shape", "OpenAICompatRequest", "OpenAICompatResponse"),
 "/fill-mask": post("fill_mask", "Fill [MASK] tokens (masked-LM models); the CLI's fill-mask --json", "FillMaskRequest", "FillMaskResponse"),
 "/zero-shot": post("zero_shot", "Zero-shot classification (NLI models); the CLI's zero-shot --json", "ZeroShotRequest", "ZeroShotResponse"),
 "/ner": post("ner", "Token classification with aggregation; the CLI's ner --json", "NERRequest", "NERResponse"),
 "/qa": post("qa", "Extractive question answering (4.x pipeline's algorithm); the CLI's qa --json", "QARequest", "QAResponse"),
 "/info": {"get": {"operationId": "get_model_info", "summary": "The model and the server's limits",
                   "responses": {"200": {"description": "the model and limits", "content": {"application/json": {"schema": ref("Info")}}}}}},
 "/health": {"get": {"operationId": "health", "summary": "200 once the model is loaded and warmed up",
                     "responses": {"200": {"description": "ready"}, "503": err("not ready")}}},
 "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                      "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": S}}}}}},
 "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                           "responses": {"200": {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
}
doc = {"openapi": "3.0.3",
       "info": {"title": "deberta serve", "version": "0.1.0",
                "description": "Lists hold at most --max-client-batch-size items (32 unless the server was started with another value). DeBERTa CPU inference with Text Embeddings Inference's API (/predict, /embed, /rerank, /tokenize, /info, /health, /metrics, /v1/embeddings) and the other pipelines' tasks (/fill-mask, /zero-shot, /ner, /qa)."},
       "paths": paths, "components": {"schemas": schemas}}
open(Path(__file__).resolve().parent.parent / "Sources" / "Serving" / "openapi.json", "w").write(json.dumps(doc, indent=2) + "\n")
