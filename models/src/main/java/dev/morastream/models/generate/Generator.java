package dev.morastream.models.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.KvCache;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.Arrays;
import java.util.Set;
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
     * Generates a continuation of {@code prompt} (BOS prepended when the tokenizer has one).
     *
     * @param onText receives text deltas as they become certain; they concatenate to the
     *     result's text exactly ({@code null} for none)
     * @throws IllegalArgumentException when the prompt does not fit in the context
     */
    public GenerationResult generate(String prompt, GenerationConfig cfg, Consumer<String> onText) {
        long start = System.nanoTime();
        int[] promptIds = tokenizer.encodeFramed(prompt, false);
        StreamingText stream = new StreamingText(cfg.stopStrings(), onText == null ? s -> {} : onText);
        int[] generated = new int[Math.min(cfg.maxNewTokens(), model.config().maxPositionEmbeddings())];
        int[] count = {0};
        Run run = run(promptIds, cfg, true, id -> {
            generated[count[0]++] = id;
            return stream.update(tokenizer.decode(Arrays.copyOf(generated, count[0])));
        });
        String text = run.stopString() ? stream.text() : stream.finish(tokenizer.decode(run.ids()));
        long end = System.nanoTime();
        long ttft = run.firstTokenAt() < 0 ? end - start : run.firstTokenAt() - start;
        return new GenerationResult(text, run.ids(), promptIds.length, run.finishReason(), ttft, end - start);
    }

    /**
     * The cached path on raw ids: no BOS is added and stop strings are not applied (they are
     * text-level; see {@link #generate}). Ends on EOS, max new tokens or full context.
     *
     * @return the generated ids, ending with the EOS id when generation ended on one
     */
    public int[] generateIds(int[] promptIds, GenerationConfig cfg) {
        return run(promptIds, cfg, true, id -> false).ids();
    }

    /**
     * Reference for {@link #generateIds}: recomputes the whole sequence without a cache at every
     * step. Same stopping rules, same sampler; quadratic cost, for tests.
     */
    public int[] generateIdsWithoutCache(int[] promptIds, GenerationConfig cfg) {
        return run(promptIds, cfg, false, id -> false).ids();
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
    private Run run(int[] prompt, GenerationConfig cfg, boolean useCache, IntPredicate onToken) {
        int context = model.config().maxPositionEmbeddings();
        checkPrompt(prompt, context);
        int limit = Math.min(cfg.maxNewTokens(), context - prompt.length);
        Set<Integer> eos = cfg.stopOnEos() ? tokenizer.eos() : Set.of();
        Sampler sampler = new Sampler(cfg);
        int[] seq = Arrays.copyOf(prompt, prompt.length + limit);
        int n = prompt.length;
        long firstAt = -1;
        Autograd.off(); // no graphs, whatever thread generates
        try (NDManager root = NDManager.newBaseManager(model.device());
                KvCache cache = useCache ? new KvCache(root, model.config().numHiddenLayers()) : null) {
            while (n - prompt.length < limit) {
                int[] feed = !useCache ? Arrays.copyOf(seq, n)
                        : n == prompt.length ? prompt : new int[] {seq[n - 1]};
                float[] logits; // (V)
                try (NDManager step = useCache ? cache.manager().newSubManager() : root.newSubManager()) {
                    NDArray ids = model.ids(step, new int[][] {feed}); // (1, T)
                    NDArray out = model.forward(ids, cache, op); // (1, T, V)
                    logits = out.get(new NDIndex("0, -1, :")).toFloatArray();
                }
                int next = sampler.next(logits);
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

    private void checkPrompt(int[] prompt, int context) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("empty prompt: give at least one token (the tokenizer has no BOS)");
        }
        if (prompt.length > context) {
            throw new IllegalArgumentException("prompt has " + prompt.length
                    + " tokens but the model's context (max_position_embeddings) is " + context + " tokens");
        }
        int vocab = model.config().vocabSize();
        for (int id : prompt) {
            if (id < 0 || id >= vocab) {
                throw new IllegalArgumentException("prompt token id " + id + " outside the vocabulary [0, " + vocab + ")");
            }
        }
    }
}
