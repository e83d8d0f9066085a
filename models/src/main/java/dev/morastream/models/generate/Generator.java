package dev.morastream.models.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.KvCache;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.IntPredicate;

/**
 * Autoregressive text generation with a {@link KvCache}: the prompt goes through the model once,
 * then one token per step. Every step runs in its own sub-manager of the cache's manager, so
 * native memory stays flat however long the generation. Sampling happens on the CPU in Java (see
 * {@link Sampler}).
 *
 * <p>Generation ends on an EOS id of the tokenizer (when {@link GenerationConfig#stopOnEos()}), on
 * a stop string, after {@link GenerationConfig#maxNewTokens()}, or when the sequence fills the
 * model's context ({@code max_position_embeddings}). Thread-safe: it keeps no state between calls.
 */
public final class Generator {
    private final LlamaModel model;
    private final TextTokenizer tokenizer;
    private final LinearOp op;

    /** Generates with the base model ({@link LinearOp#PLAIN}). */
    public Generator(LlamaModel model, TextTokenizer tokenizer) {
        this(model, tokenizer, LinearOp.PLAIN);
    }

    /** Generates through {@code op}: an adapter version's, or {@link LinearOp#PLAIN} for the base. */
    public Generator(LlamaModel model, TextTokenizer tokenizer, LinearOp op) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.op = java.util.Objects.requireNonNull(op, "op");
    }

    /**
     * What to score besides sampling, and when to give up.
     *
     * @param topLogprobs how many most likely alternatives to report at each position ({@code >= 0});
     *     the chosen token's own log-probability is always reported
     * @param echo also score the prompt: every prompt token from its prefix (one forward pass over the prompt)
     * @param cancelled polled before every forward pass; {@code true} ends the call with a
     *     {@link CancellationException} (a client that went away, a timeout)
     */
    public record Scoring(int topLogprobs, boolean echo, BooleanSupplier cancelled) {
        public static final Scoring NONE = new Scoring(0, false, () -> false);

        public Scoring {
            if (topLogprobs < 0) {
                throw new IllegalArgumentException("topLogprobs must be >= 0, got " + topLogprobs);
            }
            if (cancelled == null) {
                cancelled = () -> false;
            }
        }
    }

    /**
     * Generates a continuation of {@code prompt} (BOS prepended when the tokenizer has one).
     *
     * @param onText receives text deltas as they become certain; they concatenate to the
     *     result's text exactly ({@code null} for none)
     * @throws IllegalArgumentException when the prompt does not fit in the context
     */
    public GenerationResult generate(String prompt, GenerationConfig cfg, Consumer<String> onText) {
        return generate(tokenizer.encodeFramed(prompt, false), cfg, onText, Scoring.NONE);
    }

    /**
     * Generates a continuation of the ids {@code promptIds} as given (nothing is added), with the
     * log-probability of every generated token and, when {@link Scoring#echo}, of every prompt token.
     * With {@code maxNewTokens == 0} it only scores (one forward pass, no sampling).
     *
     * @throws CancellationException when {@link Scoring#cancelled} turned true
     */
    public GenerationResult generate(int[] promptIds, GenerationConfig cfg, Consumer<String> onText, Scoring scoring) {
        long start = System.nanoTime();
        StreamingText stream = new StreamingText(cfg.stopStrings(), onText == null ? s -> {} : onText);
        int[] generated = new int[Math.min(cfg.maxNewTokens(), model.config().maxPositionEmbeddings())];
        int[] count = {0};
        List<TokenLogprob> lps = new ArrayList<>();
        List<TokenLogprob> promptLps = new ArrayList<>();
        Run run = run(promptIds, cfg, true, id -> {
            generated[count[0]++] = id;
            return stream.update(tokenizer.decode(Arrays.copyOf(generated, count[0])));
        }, new Collect(scoring, lps, promptLps));
        String text = run.stopString() ? stream.text() : stream.finish(tokenizer.decode(run.ids()));
        long end = System.nanoTime();
        long ttft = run.firstTokenAt() < 0 ? end - start : run.firstTokenAt() - start;
        return new GenerationResult(text, run.ids(), promptIds.length, run.finishReason(), ttft, end - start, lps, promptLps);
    }

    /** Where {@link #run} puts log-probabilities ({@code null}: nowhere). */
    private record Collect(Scoring scoring, List<TokenLogprob> generated, List<TokenLogprob> prompt) {}

    /** A greedy answer of {@link #greedyBatch}: its text (cut before a stop string) and generated ids. */
    public record Answer(String text, int[] ids) {}

    /** Rows of one batched forward. */
    private static final int GREEDY_BATCH = 64;

    /**
     * Greedy answers to many prompts (ids as given, nothing added), the same as {@link
     * #generate(int[], GenerationConfig, Consumer, Scoring)} with a greedy {@code cfg} gives each
     * alone: prompts of equal length decode together, one forward per step for up to 64 rows with
     * a shared KV cache (a row that ended is fed on and ignored). For evaluations, where hundreds
     * of short answers cost hundreds of sequential generations otherwise.
     *
     * @param cfg greedy ({@code temperature <= 0}); its stop strings and EOS rule apply per row
     */
    public List<Answer> greedyBatch(List<int[]> prompts, GenerationConfig cfg) {
        if (cfg.temperature() > 0) {
            throw new IllegalArgumentException("greedyBatch is greedy: temperature " + cfg.temperature());
        }
        Answer[] out = new Answer[prompts.size()];
        java.util.Map<Integer, List<Integer>> byLength = new java.util.TreeMap<>();
        for (int i = 0; i < prompts.size(); i++) {
            checkPrompt(prompts.get(i), model.config().maxPositionEmbeddings());
            byLength.computeIfAbsent(prompts.get(i).length, k -> new ArrayList<>()).add(i);
        }
        Autograd.off();
        for (List<Integer> same : byLength.values()) {
            for (int at = 0; at < same.size(); at += GREEDY_BATCH) {
                List<Integer> part = same.subList(at, Math.min(same.size(), at + GREEDY_BATCH));
                List<int[]> rows = new ArrayList<>();
                part.forEach(i -> rows.add(prompts.get(i)));
                List<Answer> answers = greedySameLength(rows, cfg);
                for (int r = 0; r < part.size(); r++) {
                    out[part.get(r)] = answers.get(r);
                }
            }
        }
        return List.of(out);
    }

    private List<Answer> greedySameLength(List<int[]> prompts, GenerationConfig cfg) {
        int b = prompts.size();
        int len = prompts.get(0).length;
        int limit = Math.min(cfg.maxNewTokens(), model.config().maxPositionEmbeddings() - len);
        Set<Integer> eos = cfg.stopOnEos() ? tokenizer.eos() : Set.of();
        int[][] gen = new int[b][limit];
        int[] count = new int[b];
        boolean[] done = new boolean[b];
        StreamingText[] text = new StreamingText[b];
        boolean[] stopString = new boolean[b];
        for (int r = 0; r < b; r++) {
            text[r] = new StreamingText(cfg.stopStrings(), s -> { });
        }
        int vocab = model.config().vocabSize();
        try (NDManager root = NDManager.newBaseManager(model.device());
                KvCache cache = new KvCache(root, model.config().numHiddenLayers())) {
            int[][] feed = prompts.toArray(new int[0][]);
            int live = b;
            for (int t = 0; t < limit && live > 0; t++) {
                float[] logits; // (B * V)
                try (NDManager step = cache.manager().newSubManager()) {
                    NDArray out = model.forward(model.ids(step, feed), cache, op); // (B, T, V)
                    logits = out.get(new NDIndex(":, -1, :")).toFloatArray();
                }
                int[][] next = new int[b][1];
                for (int r = 0; r < b; r++) {
                    int id = Sampler.argmax(java.util.Arrays.copyOfRange(logits, r * vocab, (r + 1) * vocab));
                    next[r][0] = id;
                    if (done[r]) {
                        continue;
                    }
                    gen[r][count[r]++] = id;
                    if (eos.contains(id)) {
                        done[r] = true;
                    } else if (text[r].update(tokenizer.decode(java.util.Arrays.copyOf(gen[r], count[r])))) {
                        done[r] = true;
                        stopString[r] = true;
                    }
                    if (done[r]) {
                        live--;
                    }
                }
                feed = next;
            }
        }
        List<Answer> answers = new ArrayList<>(b);
        for (int r = 0; r < b; r++) {
            int[] ids = java.util.Arrays.copyOf(gen[r], count[r]);
            answers.add(new Answer(stopString[r] ? text[r].text() : text[r].finish(tokenizer.decode(ids)), ids));
        }
        return answers;
    }

    /**
     * The cached path on raw ids: no BOS is added and stop strings are not applied (they are
     * text-level; see {@link #generate}). Ends on EOS, max new tokens or full context.
     *
     * @return the generated ids, ending with the EOS id when generation ended on one
     */
    public int[] generateIds(int[] promptIds, GenerationConfig cfg) {
        return run(promptIds, cfg, true, id -> false, null).ids();
    }

    /**
     * Reference for {@link #generateIds}: recomputes the whole sequence without a cache at every
     * step. Same stopping rules, same sampler; quadratic cost, for tests.
     */
    public int[] generateIdsWithoutCache(int[] promptIds, GenerationConfig cfg) {
        return run(promptIds, cfg, false, id -> false, null).ids();
    }

    /**
     * Outcome of one generation loop.
     *
     * @param ids generated ids
     * @param finishReason {@link GenerationResult#STOP} or {@link GenerationResult#LENGTH}
     * @param stopString whether a stop string (rather than EOS or a limit) ended it
     * @param firstTokenAt {@link System#nanoTime()} of the first sampled token, or -1
     */
    private record Run(int[] ids, String finishReason, boolean stopString, long firstTokenAt) {}

    /**
     * @param onToken called with each sampled id that is not an ending EOS; returns true to stop
     *     (a stop string was reached)
     */
    private Run run(int[] prompt, GenerationConfig cfg, boolean useCache, IntPredicate onToken, Collect collect) {
        int context = model.config().maxPositionEmbeddings();
        checkPrompt(prompt, context);
        int limit = Math.min(cfg.maxNewTokens(), context - prompt.length);
        Set<Integer> eos = cfg.stopOnEos() ? tokenizer.eos() : Set.of();
        Sampler sampler = new Sampler(cfg);
        int[] seq = Arrays.copyOf(prompt, prompt.length + limit);
        int n = prompt.length;
        long firstAt = -1;
        Autograd.off(); // no graphs, whatever thread generates
        int top = collect == null ? 0 : collect.scoring().topLogprobs();
        try (NDManager root = NDManager.newBaseManager(model.device());
                KvCache cache = useCache ? new KvCache(root, model.config().numHiddenLayers()) : null) {
            if (collect != null && collect.scoring().echo()) {
                collect.prompt().add(TokenLogprob.unscored(prompt[0]));
                if (limit == 0) { // score only: one forward pass over the prompt
                    checkCancelled(collect);
                    try (NDManager step = root.newSubManager()) {
                        NDArray out = model.forward(model.ids(step, new int[][] {prompt}), null, op);
                        scorePrompt(out, prompt, top, collect.prompt());
                    }
                }
            }
            while (n - prompt.length < limit) {
                checkCancelled(collect);
                int[] feed = !useCache ? Arrays.copyOf(seq, n)
                        : n == prompt.length ? prompt : new int[] {seq[n - 1]};
                float[] logits; // (V)
                try (NDManager step = useCache ? cache.manager().newSubManager() : root.newSubManager()) {
                    NDArray ids = model.ids(step, new int[][] {feed}); // (1, T)
                    NDArray out = model.forward(ids, cache, op); // (1, T, V)
                    logits = out.get(new NDIndex("0, -1, :")).toFloatArray();
                    if (collect != null && collect.scoring().echo() && n == prompt.length) {
                        scorePrompt(out, prompt, top, collect.prompt());
                    }
                }
                int next = sampler.next(logits);
                if (collect != null) {
                    collect.generated().add(TokenLogprob.of(logits, next, top));
                }
                seq[n++] = next;
                if (firstAt < 0) {
                    firstAt = System.nanoTime();
                }
                int[] ids = Arrays.copyOfRange(seq, prompt.length, n);
                if (eos.contains(next)) {
                    return new Run(ids, GenerationResult.STOP, false, firstAt);
                }
                if (onToken.test(next)) {
                    return new Run(ids, GenerationResult.STOP, true, firstAt);
                }
            }
        }
        return new Run(Arrays.copyOfRange(seq, prompt.length, n), GenerationResult.LENGTH, false, firstAt);
    }

    private static void checkCancelled(Collect collect) {
        if (collect != null && collect.scoring().cancelled().getAsBoolean()) {
            throw new CancellationException("generation cancelled");
        }
    }

    /** Prompt token {@code i >= 1} scored from position {@code i - 1} of {@code out} {@code (1, T, V)}. */
    static void scorePrompt(NDArray out, int[] prompt, int top, List<TokenLogprob> into) {
        for (int i = 1; i < prompt.length; i++) {
            into.add(TokenLogprob.of(out.get(new NDIndex("0, " + (i - 1) + ", :")).toFloatArray(), prompt[i], top));
        }
    }

    private void checkPrompt(int[] prompt, int context) {
        checkPrompt(prompt, context, model.config().vocabSize());
    }

    static void checkPrompt(int[] prompt, int context, int vocab) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("empty prompt: give at least one token (the tokenizer has no BOS)");
        }
        if (prompt.length > context) {
            throw new IllegalArgumentException("prompt has " + prompt.length
                    + " tokens but the model's context (max_position_embeddings) is " + context + " tokens");
        }
        for (int id : prompt) {
            if (id < 0 || id >= vocab) {
                throw new IllegalArgumentException("prompt token id " + id + " outside the vocabulary [0, " + vocab + ")");
            }
        }
    }
}
