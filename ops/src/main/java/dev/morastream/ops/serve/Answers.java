package dev.morastream.ops.serve;

import dev.morastream.actors.serving.Served;
import dev.morastream.models.generate.GenerationResult;
import dev.morastream.models.generate.TokenLogprob;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.ops.serve.openai.CompletionResponse;
import dev.morastream.ops.serve.openai.CompletionResponse.ChatChoice;
import dev.morastream.ops.serve.openai.CompletionResponse.Choice;
import dev.morastream.ops.serve.openai.CompletionResponse.Delta;
import dev.morastream.ops.serve.openai.CompletionResponse.DeltaChoice;
import dev.morastream.ops.serve.openai.CompletionResponse.Message;
import dev.morastream.ops.serve.openai.CompletionResponse.TextChoice;
import dev.morastream.ops.serve.openai.CompletionResponse.Usage;
import dev.morastream.ops.serve.openai.Logprobs;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Generation results as the API's response records: the choices of a completion or chat completion
 * (with {@code best_of} selection, echo and logprobs), the chunks of a stream, the usage.
 */
final class Answers {
    private final TextTokenizer tok;

    Answers(TextTokenizer tok) {
        this.tok = tok;
    }

    /**
     * The whole answer of a unary request.
     *
     * @param candidates per prompt, its {@code best_of} results in candidate order
     * @param servedBy the version that answered
     */
    CompletionResponse answer(CompletionRequest ask, String id, long created, List<List<Served>> candidates, String servedBy) {
        List<Choice> choices = new ArrayList<>();
        long promptTokens = 0;
        long completionTokens = 0;
        for (int p = 0; p < ask.prompts.size(); p++) {
            List<Served> cands = candidates.get(p);
            promptTokens += cands.get(0).result().promptTokens();
            for (Served s : cands) {
                completionTokens += s.result().completionTokens();
            }
            List<Served> chosen = cands;
            if (ask.bestOf > ask.n) { // the n candidates of highest mean logprob, in candidate order on ties
                chosen = cands.stream().sorted(Comparator.comparingDouble((Served s) -> -s.result().meanLogprob())).limit(ask.n).toList();
            }
            for (Served s : chosen) {
                choices.add(choice(ask, ask.prompts.get(p), s.result(), choices.size()));
            }
        }
        return CompletionResponse.of(id, ask.chat ? "chat.completion" : "text_completion", created, servedBy, choices,
                Usage.of(promptTokens, completionTokens));
    }

    private Choice choice(CompletionRequest ask, CompletionRequest.Prompt prompt, GenerationResult r, int index) {
        if (ask.chat) {
            return new ChatChoice(index, Message.assistant(r.text()), ask.logprobs >= 0 ? chatLogprobs(r) : null, r.finishReason());
        }
        return new TextChoice(index, ask.echo ? prompt.text() + r.text() : r.text(), ask.logprobs >= 0 ? completionLogprobs(ask, r) : null,
                r.finishReason());
    }

    /** One chunk of a stream: the text {@code delta} adds, and the finish reason in the last ({@code role}: the first chat chunk). */
    CompletionResponse chunk(CompletionRequest ask, String id, long created, String by, String delta, String finish, boolean role) {
        Choice c = ask.chat ? new DeltaChoice(0, new Delta(role ? "assistant" : null, delta), null, finish)
                : new TextChoice(0, delta, null, finish);
        return CompletionResponse.of(id, streamObject(ask), created, by, List.of(c), null);
    }

    /** The chunk after the last with {@code stream_options.include_usage}: no choices, the usage. */
    CompletionResponse usageChunk(CompletionRequest ask, String id, long created, String by, GenerationResult r) {
        return CompletionResponse.of(id, streamObject(ask), created, by, List.of(), Usage.of(r.promptTokens(), r.completionTokens()));
    }

    private static String streamObject(CompletionRequest ask) {
        return ask.chat ? "chat.completion.chunk" : "text_completion";
    }

    /**
     * The completions API's columns: with echo the prompt's tokens first (the very first has null
     * logprob and top), offsets into the choice's text.
     */
    private Logprobs.Completion completionLogprobs(CompletionRequest ask, GenerationResult r) {
        List<TokenLogprob> lps = new ArrayList<>();
        if (ask.echo) {
            lps.addAll(r.promptLogprobs());
        }
        lps.addAll(r.logprobs());
        List<String> pieces = pieces(lps.stream().mapToInt(TokenLogprob::id).toArray());
        List<Double> logprobs = new ArrayList<>();
        List<Map<String, Double>> top = new ArrayList<>();
        List<Integer> offsets = new ArrayList<>();
        int offset = 0;
        for (int i = 0; i < lps.size(); i++) {
            TokenLogprob t = lps.get(i);
            offsets.add(offset);
            offset += pieces.get(i).length();
            if (!t.scored()) {
                logprobs.add(null);
                top.add(null);
                continue;
            }
            logprobs.add(t.logprob());
            Map<String, Double> alt = new LinkedHashMap<>();
            for (int k = 0; k < t.topIds().length; k++) {
                alt.putIfAbsent(tok.decode(new int[] {t.topIds()[k]}), t.topLogprobs()[k]);
            }
            top.add(alt);
        }
        return new Logprobs.Completion(pieces, logprobs, top, offsets);
    }

    /** {@code choices[].logprobs} of the chat API. */
    private Logprobs.Chat chatLogprobs(GenerationResult r) {
        int[] ids = r.logprobs().stream().mapToInt(TokenLogprob::id).toArray();
        List<String> pieces = pieces(ids);
        List<Logprobs.Token> content = new ArrayList<>();
        for (int i = 0; i < ids.length; i++) {
            TokenLogprob t = r.logprobs().get(i);
            List<Logprobs.Token> top = new ArrayList<>();
            for (int k = 0; k < t.topIds().length; k++) {
                top.add(token(tok.decode(new int[] {t.topIds()[k]}), t.topLogprobs()[k], null));
            }
            content.add(token(pieces.get(i), t.logprob(), top));
        }
        return new Logprobs.Chat(content);
    }

    private static Logprobs.Token token(String token, double logprob, List<Logprobs.Token> top) {
        byte[] utf8 = token.getBytes(StandardCharsets.UTF_8);
        int[] bytes = new int[utf8.length];
        for (int i = 0; i < utf8.length; i++) {
            bytes[i] = utf8[i] & 0xff;
        }
        return new Logprobs.Token(token, logprob, bytes, top);
    }

    /**
     * The text each id adds to the decoded sequence, so that the pieces concatenate to the decoded
     * text; a token that ends inside a multi-byte character adds nothing until one completes it.
     */
    private List<String> pieces(int[] ids) {
        List<String> out = new ArrayList<>(ids.length);
        String prev = "";
        for (int i = 0; i < ids.length; i++) {
            String cur = tok.decode(Arrays.copyOf(ids, i + 1));
            if (i < ids.length - 1) {
                int end = cur.length();
                while (end > 0 && cur.charAt(end - 1) == '\uFFFD') {
                    end--;
                }
                cur = cur.substring(0, end);
            }
            if (cur.startsWith(prev)) {
                out.add(cur.substring(prev.length()));
            } else {
                out.add(tok.decode(new int[] {ids[i]}));
            }
            prev = cur;
        }
        return out;
    }
}
