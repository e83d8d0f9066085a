package dev.morastream.ops.serve;

import static dev.morastream.ops.serve.Params.bool;
import static dev.morastream.ops.serve.Params.given;
import static dev.morastream.ops.serve.Params.integer;
import static dev.morastream.ops.serve.Params.number;
import static dev.morastream.ops.serve.Params.string;
import static dev.morastream.ops.serve.Params.typeError;

import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.ops.serve.openai.ChatCompletionBody;
import dev.morastream.ops.serve.openai.CompletionBody;
import dev.morastream.ops.serve.openai.OpenAiJson;
import dev.morastream.ops.serve.openai.OpenAiRequest;
import dev.morastream.ops.serve.openai.CommonParams;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A checked {@code /v1/completions} or {@code /v1/chat/completions} body: the JSON is bound to its
 * protocol record ({@link CompletionBody}, {@link ChatCompletionBody}), then validated. Every parameter is
 * type-strict (an integer is an integral JSON number, a flag a JSON boolean, a stop string a
 * string); a JSON {@code null} means "not given". Parameters the API does not implement, and
 * unknown ones, are refused with a 400 that names them ({@code param}); {@code user} is accepted and
 * ignored.
 */
final class CompletionRequest {
    /** The largest top-k of {@code logprobs} / {@code top_logprobs}. */
    static final int MAX_TOP_LOGPROBS = 20;
    /** The most prompts one completions request may carry. */
    static final int MAX_PROMPTS = 64;
    /** The parameters each endpoint knows: the wire names of its protocol record. */
    private static final Set<String> COMPLETION = OpenAiJson.parameterNames(CompletionBody.class);
    private static final Set<String> CHAT = OpenAiJson.parameterNames(ChatCompletionBody.class);
    private static final Set<String> MESSAGE = OpenAiJson.parameterNames(ChatCompletionBody.Message.class);
    private static final Set<String> STREAM_OPTIONS = OpenAiJson.parameterNames(CommonParams.StreamOptions.class);
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
     * Checks the names of a body, binds it to its protocol record and validates that.
     *
     * @param maxTokens the largest {@code max_tokens}
     * @param maxN the largest {@code n} and {@code best_of}
     */
    static CompletionRequest parse(JsonNode b, boolean chat, int maxTokens, int maxN, TextTokenizer tok, ChatTemplate template,
            int context) {
        checkNames(b, chat);
        OpenAiRequest body = chat ? OpenAiJson.bind(b, ChatCompletionBody.class) : OpenAiJson.bind(b, CompletionBody.class);
        return of(body, maxTokens, maxN, tok, template, context);
    }

    /** Unknown parameters, and known ones this API does not implement given a value, in the body's order. */
    private static void checkNames(JsonNode b, boolean chat) {
        for (Iterator<String> it = b.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!(chat ? CHAT : COMPLETION).contains(f)) {
                boolean elsewhere = (chat ? COMPLETION : CHAT).contains(f); // then a parameter of the other endpoint only
                throw ApiError.badParam(f, "unknown_parameter", "Unrecognized request argument supplied: '" + f + "'"
                        + (elsewhere ? " (it belongs to " + (chat ? "/v1/completions" : "/v1/chat/completions") + ")" : ""));
            }
            if (UNSUPPORTED.containsKey(f) && !b.get(f).isNull()) {
                throw ApiError.badParam(f, "unsupported_parameter", "'" + f + "' is not supported by this server: " + UNSUPPORTED.get(f));
            }
        }
    }

    /** Validates a bound body: types, ranges, the combinations the API refuses, the context length. */
    static CompletionRequest of(OpenAiRequest body, int maxTokens, int maxN, TextTokenizer tok, ChatTemplate template, int context) {
        CommonParams s = body.common();
        boolean chat = body instanceof ChatCompletionBody;
        String model = string(s.model(), true, "model");
        if (given(s.user()) && !s.user().isTextual()) {
            throw typeError("user", "a string", s.user());
        }
        penalty(s.presencePenalty(), "presence_penalty");
        penalty(s.frequencyPenalty(), "frequency_penalty");
        JsonNode bias = s.logitBias();
        if (given(bias) && !(bias.isObject() && bias.isEmpty())) {
            throw ApiError.badParam("logit_bias", "unsupported_parameter", "'logit_bias' is not supported by this server");
        }
        if (body instanceof ChatCompletionBody c) {
            JsonNode rf = c.responseFormat();
            if (given(rf) && !(rf.isObject() && rf.size() == 1 && "text".equals(rf.path("type").asText(null)))) {
                throw ApiError.badParam("response_format", "unsupported_parameter",
                        "only response_format {\"type\": \"text\"} is supported by this server");
            }
        }

        boolean stream = bool(s.stream(), false, "stream");
        boolean usageInStream = usageInStream(s.streamOptions(), stream);
        boolean echo = body instanceof CompletionBody t && bool(t.echo(), false, "echo");
        int logprobs;
        if (body instanceof ChatCompletionBody c) {
            boolean lp = bool(s.logprobs(), false, "logprobs");
            int top = integer(c.topLogprobs(), "top_logprobs", 0, 0, MAX_TOP_LOGPROBS);
            if (!lp && given(c.topLogprobs())) {
                throw ApiError.badParam("top_logprobs", "invalid_value", "'top_logprobs' needs \"logprobs\": true");
            }
            logprobs = lp ? top : -1;
        } else {
            logprobs = given(s.logprobs()) ? integer(s.logprobs(), "logprobs", 0, 0, MAX_TOP_LOGPROBS) : -1;
        }

        int n = integer(s.n(), "n", 1, 1, maxN);
        int bestOf = body instanceof CompletionBody t ? integer(t.bestOf(), "best_of", n, 1, maxN) : n;
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

        int newTokens = newTokens(body, echo, maxTokens);
        double temperature = number(s.temperature(), "temperature", 1.0, 0, 2);
        double topP = number(s.topP(), "top_p", 1.0, 0, 1);
        if (topP <= 0) {
            throw ApiError.badParam("top_p", "invalid_value", "'top_p' must be in (0, 1]");
        }
        long seed = ThreadLocalRandom.current().nextLong();
        JsonNode sd = s.seed();
        if (given(sd)) {
            if (!sd.isIntegralNumber() || !sd.canConvertToLong()) {
                throw typeError("seed", "an integer", sd);
            }
            seed = sd.asLong();
        }
        List<String> stops = stops(s.stop());

        List<Prompt> prompts = new ArrayList<>();
        if (body instanceof ChatCompletionBody c) {
            ChatTemplate.Rendered r = template.render(messages(c.messages()), tok);
            stops.addAll(r.stops());
            prompts.add(new Prompt(r.text(), r.ids()));
        } else {
            prompts.addAll(prompts(((CompletionBody) body).prompt(), tok));
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

    private static void penalty(JsonNode v, String name) {
        if (number(v, name, 0, -2, 2) != 0) {
            throw ApiError.badParam(name, "unsupported_parameter", "'" + name + "' other than 0 is not supported by this server");
        }
    }

    /** {@code stream_options.include_usage}; the options only with {@code stream}. */
    private static boolean usageInStream(JsonNode so, boolean stream) {
        if (!given(so)) {
            return false;
        }
        if (!stream) {
            throw ApiError.badParam("stream_options", "invalid_value", "'stream_options' is only allowed with \"stream\": true");
        }
        if (!so.isObject()) {
            throw typeError("stream_options", "an object", so);
        }
        for (Iterator<String> it = so.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!STREAM_OPTIONS.contains(f)) {
                throw ApiError.badParam("stream_options." + f, "unknown_parameter", "Unrecognized stream option '" + f + "'");
            }
        }
        return bool(OpenAiJson.bind(so, CommonParams.StreamOptions.class).includeUsage(), false, "stream_options.include_usage");
    }

    /** {@code max_tokens}, or {@code max_completion_tokens} when it is not given; 16 when neither is. */
    private static int newTokens(OpenAiRequest body, boolean echo, int maxTokens) {
        JsonNode mt = body.common().maxTokens();
        String mtName = "max_tokens";
        if (!given(mt) && body instanceof ChatCompletionBody c) {
            mt = c.maxCompletionTokens();
            mtName = "max_completion_tokens";
        }
        if (!given(mt)) {
            return 16;
        }
        int lowest = echo ? 0 : 1;
        if (!mt.isIntegralNumber() || !mt.canConvertToInt() || mt.asInt() < lowest || mt.asInt() > maxTokens) {
            throw new ApiError(400, "invalid_request_error", "invalid_max_tokens", "'" + mtName + "' must be an integer in ["
                    + lowest + ", " + maxTokens + "]" + (echo ? "" : " (0 only with echo)") + ", got " + mt, mtName);
        }
        return mt.asInt();
    }

    /** {@code stop}: a string or at most 4 non-empty strings (a mutable list: chat templates add theirs). */
    private static List<String> stops(JsonNode st) {
        List<String> stops = new ArrayList<>();
        if (given(st) && st.isTextual()) {
            stops.add(st.asText());
        } else if (given(st) && st.isArray()) {
            for (int i = 0; i < st.size(); i++) {
                if (!st.get(i).isTextual()) {
                    throw typeError("stop[" + i + "]", "a string", st.get(i));
                }
                stops.add(st.get(i).asText());
            }
        } else if (given(st)) {
            throw typeError("stop", "a string or an array of strings", st);
        }
        if (stops.size() > 4 || stops.stream().anyMatch(String::isEmpty)) {
            throw ApiError.badParam("stop", "invalid_value", "'stop' takes at most 4 non-empty strings");
        }
        return stops;
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

    private static List<ChatTemplate.Message> messages(JsonNode msgs) {
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
                if (!MESSAGE.contains(f)) {
                    throw ApiError.badParam(at + "." + f, "unsupported_parameter", "'" + at + "." + f
                            + "' is not supported (a message has role, content and optionally name)");
                }
            }
            ChatCompletionBody.Message message = OpenAiJson.bind(m, ChatCompletionBody.Message.class);
            String role = string(message.role(), true, at + ".role");
            string(message.name(), false, at + ".name");
            out.add(new ChatTemplate.Message(role, content(message.content(), at + ".content")));
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
}
