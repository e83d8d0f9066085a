package dev.morastream.ops.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A checked {@code /v1/completions} or {@code /v1/chat/completions} body. Every parameter is
 * type-strict (an integer is an integral JSON number, a flag a JSON boolean, a stop string a
 * string); a JSON {@code null} means "not given". Parameters the API does not implement, and
 * unknown ones, are refused with a 400 that names them ({@code param}); {@link #IGNORED} lists the
 * few accepted and ignored.
 */
final class CompletionRequest {
    /** The largest top-k of {@code logprobs} / {@code top_logprobs}. */
    static final int MAX_TOP_LOGPROBS = 20;
    /** The most prompts one completions request may carry. */
    static final int MAX_PROMPTS = 64;
    /** Accepted and ignored: they change nothing here. */
    static final Set<String> IGNORED = Set.of("user");

    private static final Set<String> COMMON = Set.of("model", "max_tokens", "temperature", "top_p", "n", "stream",
            "stream_options", "stop", "seed", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias");
    private static final Set<String> COMPLETION = Set.of("prompt", "echo", "best_of", "suffix");
    private static final Set<String> CHAT = Set.of("messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
            "functions", "function_call", "parallel_tool_calls", "response_format");
    /** Known OpenAI parameters this API does not implement (refused when given a value). */
    private static final Map<String, String> UNSUPPORTED = Map.of(
            "suffix", "insertion (suffix) is not supported",
            "tools", "tool calling is not supported",
            "tool_choice", "tool calling is not supported",
            "functions", "function calling is not supported",
            "function_call", "function calling is not supported",
            "parallel_tool_calls", "tool calling is not supported");

    /** One prompt: its text (what {@code echo} returns) and the ids the model sees. */
    record Prompt(String text, int[] ids) {}

    final String model;
    final boolean chat;
    final List<Prompt> prompts;
    final GenerationConfig cfg;
    final int n;
    final int bestOf;
    final boolean stream;
    final boolean usageInStream;
    final boolean echo;
    /** Top-k of the log-probabilities to return, or -1 for none. */
    final int logprobs;

    private CompletionRequest(String model, boolean chat, List<Prompt> prompts, GenerationConfig cfg, int n, int bestOf,
            boolean stream, boolean usageInStream, boolean echo, int logprobs) {
        this.model = model;
        this.chat = chat;
        this.prompts = prompts;
        this.cfg = cfg;
        this.n = n;
        this.bestOf = bestOf;
        this.stream = stream;
        this.usageInStream = usageInStream;
        this.echo = echo;
        this.logprobs = logprobs;
    }

    /**
     * @param maxTokens the largest {@code max_tokens}
     * @param maxN the largest {@code n} and {@code best_of}
     */
    static CompletionRequest parse(JsonNode b, boolean chat, int maxTokens, int maxN, TextTokenizer tok, ChatTemplate template,
            int context) {
        for (Iterator<String> it = b.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            boolean known = COMMON.contains(f) || IGNORED.contains(f) || (chat ? CHAT : COMPLETION).contains(f);
            if (!known) {
                throw ApiError.badParam(f, "unknown_parameter", "Unrecognized request argument supplied: '" + f + "'"
                        + ((chat ? COMPLETION : CHAT).contains(f) ? " (it belongs to " + (chat ? "/v1/completions" : "/v1/chat/completions") + ")" : ""));
            }
            if (UNSUPPORTED.containsKey(f) && !b.get(f).isNull()) {
                throw ApiError.badParam(f, "unsupported_parameter", "'" + f + "' is not supported by this server: " + UNSUPPORTED.get(f));
            }
        }
        String model = string(b, "model", true);
        if (!b.path("user").isMissingNode() && !b.get("user").isNull() && !b.get("user").isTextual()) {
            throw typeError("user", "a string", b.get("user"));
        }
        for (String pen : List.of("presence_penalty", "frequency_penalty")) {
            double v = number(b, pen, 0, -2, 2);
            if (v != 0) {
                throw ApiError.badParam(pen, "unsupported_parameter", "'" + pen + "' other than 0 is not supported by this server");
            }
        }
        JsonNode bias = b.get("logit_bias");
        if (bias != null && !bias.isNull() && !(bias.isObject() && bias.isEmpty())) {
            throw ApiError.badParam("logit_bias", "unsupported_parameter", "'logit_bias' is not supported by this server");
        }
        JsonNode rf = b.get("response_format");
        if (rf != null && !rf.isNull() && !(rf.isObject() && rf.size() == 1 && "text".equals(rf.path("type").asText(null)))) {
            throw ApiError.badParam("response_format", "unsupported_parameter",
                    "only response_format {\"type\": \"text\"} is supported by this server");
        }

        boolean stream = bool(b, "stream", false);
        JsonNode so = b.get("stream_options");
        boolean usageInStream = false;
        if (so != null && !so.isNull()) {
            if (!stream) {
                throw ApiError.badParam("stream_options", "invalid_value", "'stream_options' is only allowed with \"stream\": true");
            }
            if (!so.isObject()) {
                throw typeError("stream_options", "an object", so);
            }
            for (Iterator<String> it = so.fieldNames(); it.hasNext(); ) {
                String f = it.next();
                if (!f.equals("include_usage")) {
                    throw ApiError.badParam("stream_options." + f, "unknown_parameter", "Unrecognized stream option '" + f + "'");
                }
            }
            usageInStream = bool(so, "include_usage", false, "stream_options.include_usage");
        }

        boolean echo = !chat && bool(b, "echo", false);
        int logprobs;
        if (chat) {
            boolean lp = bool(b, "logprobs", false);
            int top = integer(b, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS);
            if (!lp && b.hasNonNull("top_logprobs")) {
                throw ApiError.badParam("top_logprobs", "invalid_value", "'top_logprobs' needs \"logprobs\": true");
            }
            logprobs = lp ? top : -1;
        } else {
            logprobs = b.hasNonNull("logprobs") ? integer(b, "logprobs", 0, 0, MAX_TOP_LOGPROBS) : -1;
        }

        int n = integer(b, "n", 1, 1, maxN);
        int bestOf = chat ? n : integer(b, "best_of", n, 1, maxN);
        if (bestOf < n) {
            throw ApiError.badParam("best_of", "invalid_value", "'best_of' (" + bestOf + ") must be >= n (" + n + ")");
        }
        if (stream) {
            if (n > 1 || bestOf > 1) {
                throw ApiError.badParam(n > 1 ? "n" : "best_of", "unsupported_parameter", "n > 1 and best_of > 1 are not supported with stream");
            }
            if (logprobs >= 0) {
                throw ApiError.badParam("logprobs", "unsupported_parameter", "logprobs are not supported with stream");
            }
            if (echo) {
                throw ApiError.badParam("echo", "unsupported_parameter", "echo is not supported with stream");
            }
        }

        JsonNode mt = b.hasNonNull("max_tokens") ? b.get("max_tokens") : b.get("max_completion_tokens");
        String mtName = b.hasNonNull("max_tokens") ? "max_tokens" : "max_completion_tokens";
        int newTokens = 16;
        int lowest = echo ? 0 : 1;
        if (mt != null && !mt.isNull()) {
            if (!mt.isIntegralNumber() || !mt.canConvertToInt() || mt.asInt() < lowest || mt.asInt() > maxTokens) {
                throw new ApiError(400, "invalid_request_error", "invalid_max_tokens", "'" + mtName + "' must be an integer in ["
                        + lowest + ", " + maxTokens + "]" + (echo ? "" : " (0 only with echo)") + ", got " + mt, mtName);
            }
            newTokens = mt.asInt();
        }
        double temperature = number(b, "temperature", 1.0, 0, 2);
        double topP = number(b, "top_p", 1.0, 0, 1);
        if (topP <= 0) {
            throw ApiError.badParam("top_p", "invalid_value", "'top_p' must be in (0, 1]");
        }
        long seed = ThreadLocalRandom.current().nextLong();
        JsonNode sd = b.get("seed");
        if (sd != null && !sd.isNull()) {
            if (!sd.isIntegralNumber() || !sd.canConvertToLong()) {
                throw typeError("seed", "an integer", sd);
            }
            seed = sd.asLong();
        }
        List<String> stops = new ArrayList<>();
        JsonNode st = b.get("stop");
        if (st != null && st.isTextual()) {
            stops.add(st.asText());
        } else if (st != null && st.isArray()) {
            for (int i = 0; i < st.size(); i++) {
                if (!st.get(i).isTextual()) {
                    throw typeError("stop[" + i + "]", "a string", st.get(i));
                }
                stops.add(st.get(i).asText());
            }
        } else if (st != null && !st.isNull()) {
            throw typeError("stop", "a string or an array of strings", st);
        }
        if (stops.size() > 4 || stops.stream().anyMatch(String::isEmpty)) {
            throw ApiError.badParam("stop", "invalid_value", "'stop' takes at most 4 non-empty strings");
        }

        List<Prompt> prompts = new ArrayList<>();
        if (chat) {
            ChatTemplate.Rendered r = template.render(messages(b), tok);
            stops.addAll(r.stops());
            prompts.add(new Prompt(r.text(), r.ids()));
        } else {
            prompts.addAll(prompts(b.get("prompt"), tok));
        }
        for (int i = 0; i < prompts.size(); i++) {
            int promptTokens = prompts.get(i).ids().length;
            if (promptTokens + newTokens > context) {
                throw new ApiError(400, "invalid_request_error", "context_length_exceeded",
                        "This model's maximum context length is " + context + " tokens. However, you requested "
                                + (promptTokens + newTokens) + " tokens (" + promptTokens + " in the prompt"
                                + (prompts.size() > 1 ? " " + i : "") + ", " + newTokens
                                + " in the completion). Please reduce the prompt or max_tokens.", chat ? "messages" : "prompt");
            }
        }
        return new CompletionRequest(model, chat, List.copyOf(prompts),
                new GenerationConfig(newTokens, temperature, topP, seed, stops, true), n, bestOf, stream, usageInStream, echo, logprobs);
    }

    /** {@code prompt}: a string, an array of strings, an array of token ids, or an array of arrays of token ids. */
    private static List<Prompt> prompts(JsonNode p, TextTokenizer tok) {
        if (p == null || p.isNull()) {
            throw ApiError.badParam("prompt", "missing_required_parameter", "'prompt' is required");
        }
        List<Prompt> out = new ArrayList<>();
        if (p.isTextual()) {
            out.add(text(p.asText(), tok));
        } else if (p.isArray() && !p.isEmpty() && p.get(0).isIntegralNumber()) {
            out.add(ids(p, "prompt", tok));
        } else if (p.isArray() && !p.isEmpty()) {
            if (p.size() > MAX_PROMPTS) {
                throw ApiError.badParam("prompt", "invalid_value", "at most " + MAX_PROMPTS + " prompts per request, got " + p.size());
            }
            for (int i = 0; i < p.size(); i++) {
                JsonNode x = p.get(i);
                if (x.isTextual()) {
                    out.add(text(x.asText(), tok));
                } else if (x.isArray() && !x.isEmpty()) {
                    out.add(ids(x, "prompt[" + i + "]", tok));
                } else {
                    throw typeError("prompt[" + i + "]", "a string or a non-empty array of token ids", x);
                }
            }
        } else {
            throw typeError("prompt", "a string, an array of strings or a non-empty array of token ids", p);
        }
        return out;
    }

    /** A text prompt, framed as the model sees a document (BOS first), as {@code eval perplexity} frames text. */
    private static Prompt text(String s, TextTokenizer tok) {
        return new Prompt(s, tok.encodeFramed(s, false));
    }

    /** Token ids, used as given (no BOS added). */
    private static Prompt ids(JsonNode a, String name, TextTokenizer tok) {
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode x = a.get(i);
            if (!x.isIntegralNumber() || !x.canConvertToInt() || x.asInt() < 0 || x.asInt() >= tok.vocabSize()) {
                throw typeError(name + "[" + i + "]", "a token id in [0, " + tok.vocabSize() + ")", x);
            }
            ids[i] = x.asInt();
        }
        return new Prompt(tok.decode(ids), ids);
    }

    private static List<ChatTemplate.Message> messages(JsonNode b) {
        JsonNode msgs = b.get("messages");
        if (msgs == null || !msgs.isArray() || msgs.isEmpty()) {
            throw ApiError.badParam("messages", "invalid_value", "'messages' must be a non-empty array of {role, content}");
        }
        List<ChatTemplate.Message> out = new ArrayList<>();
        for (int i = 0; i < msgs.size(); i++) {
            JsonNode m = msgs.get(i);
            String at = "messages[" + i + "]";
            if (!m.isObject()) {
                throw typeError(at, "an object {role, content}", m);
            }
            for (Iterator<String> it = m.fieldNames(); it.hasNext(); ) {
                String f = it.next();
                if (!Set.of("role", "content", "name").contains(f)) {
                    throw ApiError.badParam(at + "." + f, "unsupported_parameter", "'" + at + "." + f
                            + "' is not supported (a message has role, content and optionally name)");
                }
            }
            String role = string(m, "role", true, at + ".role");
            string(m, "name", false, at + ".name");
            out.add(new ChatTemplate.Message(role, content(m.get("content"), at + ".content")));
        }
        return out;
    }

    private static String content(JsonNode c, String at) {
        if (c != null && c.isTextual()) {
            return c.asText();
        }
        if (c != null && c.isArray()) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < c.size(); i++) {
                JsonNode part = c.get(i);
                if (!part.isObject() || !"text".equals(part.path("type").asText(null)) || !part.path("text").isTextual()) {
                    throw ApiError.badParam(at + "[" + i + "]", "unsupported_parameter",
                            "only {\"type\": \"text\", \"text\": string} content parts are supported");
                }
                sb.append(part.get("text").asText());
            }
            return sb.toString();
        }
        throw typeError(at, "a string or an array of text parts", c);
    }

    static ApiError typeError(String param, String want, JsonNode got) {
        return ApiError.badParam(param, "invalid_type", "'" + param + "' must be " + want + ", got " + (got == null ? "nothing" : got));
    }

    private static String string(JsonNode n, String field, boolean required) {
        return string(n, field, required, field);
    }

    private static String string(JsonNode n, String field, boolean required, String name) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw ApiError.badParam(name, "missing_required_parameter", "'" + name + "' is required");
            }
            return null;
        }
        if (!v.isTextual()) {
            throw typeError(name, "a string", v);
        }
        return v.asText();
    }

    private static boolean bool(JsonNode b, String field, boolean dflt) {
        return bool(b, field, dflt, field);
    }

    private static boolean bool(JsonNode b, String field, boolean dflt, String name) {
        JsonNode v = b.get(field);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw typeError(name, "true or false", v);
        }
        return v.asBoolean();
    }

    private static int integer(JsonNode b, String field, int dflt, int lo, int hi) {
        JsonNode v = b.get(field);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.asInt() < lo || v.asInt() > hi) {
            throw ApiError.badParam(field, "invalid_type", "'" + field + "' must be an integer in [" + lo + ", " + hi + "], got " + v);
        }
        return v.asInt();
    }

    private static double number(JsonNode b, String field, double dflt, double lo, double hi) {
        JsonNode v = b.get(field);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isNumber() || v.asDouble() < lo || v.asDouble() > hi) {
            throw ApiError.badParam(field, "invalid_type", "'" + field + "' must be a number in [" + lo + ", " + hi + "], got " + v);
        }
        return v.asDouble();
    }
}
