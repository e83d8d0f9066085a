package dev.morastream.models.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.BatchKvCache;
import dev.morastream.models.llama.KvCache;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.llama.RowGroupedOp;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.function.Consumer;

/**
 * Continuous batching: the generations of many requests decode together, one forward per step for
 * all of them ({@link LlamaModel#decode}), each row with its own adapter op (rows of different
 * versions share the base GEMMs through {@link RowGroupedOp}), its own position, sampler, stop
 * strings and limits. Requests join between steps ({@link #join(List)}: the prompts of those
 * joining together are prefilled in one forward, then their keys and values are copied into free
 * slots of the shared {@link BatchKvCache}) and leave between steps when they end, fail or are
 * cancelled.
 *
 * <p>Each row gives what {@link Generator#generate(int[], GenerationConfig, Consumer,
 * Generator.Scoring)} gives it alone: the same prefill positions, same sampler (its own seeded
 * RNG), same stopping rules, same log-probabilities and echo; the logits equal the one-sequence ones
 * within float rounding. Native memory: one sub-manager per step and per prefill, the cache owned
 * by the batch; a leaving row frees its slot. Not thread-safe: one thread (an actor) owns a batch.
 */
public final class DecodeBatch implements AutoCloseable {
    private final LlamaModel model;
    private final TextTokenizer tokenizer;
    private final NDManager root;
    private final BatchKvCache cache;
    private final List<Row> live = new ArrayList<>(); // live.get(i) sits in slot i
    private List<LinearOp> composition = List.of(); // the op of each row when rowOps was built
    private NDManager rowOpsManager; // owns rowOps' indices and prepared adapter matrices
    private LinearOp rowOps; // per-row adapter selection for the rows as they are now

    /**
     * @param maxRows most sequences decoding at once (slots of the cache)
     */
    public DecodeBatch(LlamaModel model, TextTokenizer tokenizer, int maxRows) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.root = NDManager.newBaseManager(model.device());
        this.cache = new BatchKvCache(root, model.config(), maxRows);
    }

    /** Rows decoding now. */
    public int size() {
        return live.size();
    }

    /** Most rows at once. */
    public int capacity() {
        return cache.slots();
    }

    /** Whether no row can join before one leaves. */
    public boolean full() {
        return live.size() >= cache.slots();
    }

    /** One generation in the batch. Its methods are for the thread that owns the batch. */
    public final class Row {
        private final int[] prompt;
        private final LinearOp op;
        private final Generator.Scoring scoring;
        private final int limit;
        private final Set<Integer> eos;
        private final Sampler sampler;
        private final StreamingText stream;
        private final int[] generated;
        private final List<TokenLogprob> lps = new ArrayList<>();
        private final List<TokenLogprob> promptLps = new ArrayList<>();
        private final long start = System.nanoTime();
        private int count;
        private long firstAt = -1;
        private int slot = -1;
        private GenerationResult result;
        private Throwable failure;

        private Row(int[] prompt, GenerationConfig cfg, LinearOp op, Generator.Scoring scoring, Consumer<String> onText) {
            this.prompt = prompt.clone();
            this.op = op;
            this.scoring = scoring;
            this.limit = Math.min(cfg.maxNewTokens(), model.config().maxPositionEmbeddings() - prompt.length);
            this.eos = cfg.stopOnEos() ? tokenizer.eos() : Set.of();
            this.sampler = new Sampler(cfg);
            this.stream = new StreamingText(cfg.stopStrings(), onText == null ? s -> { } : onText);
            this.generated = new int[Math.max(0, limit)];
        }

        /** Whether the row has left the batch (ended, failed or cancelled). */
        public boolean done() {
            return result != null || failure != null;
        }

        /** The generation, once it ended normally; {@code null} otherwise. */
        public GenerationResult result() {
            return result;
        }

        /**
         * Why the row left early: the {@link CancellationException} of {@link
         * Generator.Scoring#cancelled}, or what a listener or the sampler threw; {@code null} otherwise.
         */
        public Throwable failure() {
            return failure;
        }

        /** Takes the logits {@code (V)} of the next position: samples, streams, checks the ends. */
        private void accept(float[] logits) {
            int next = sampler.next(logits);
            lps.add(TokenLogprob.of(logits, next, scoring.topLogprobs()));
            generated[count++] = next;
            if (firstAt < 0) {
                firstAt = System.nanoTime();
            }
            if (eos.contains(next)) {
                finish(GenerationResult.STOP, false);
            } else if (stream.update(tokenizer.decode(Arrays.copyOf(generated, count)))) {
                finish(GenerationResult.STOP, true);
            } else if (count >= limit) {
                finish(GenerationResult.LENGTH, false);
            }
        }

        private void finish(String reason, boolean stopString) {
            int[] ids = Arrays.copyOf(generated, count);
            String text = stopString ? stream.text() : stream.finish(tokenizer.decode(ids));
            long end = System.nanoTime();
            long ttft = firstAt < 0 ? end - start : firstAt - start;
            result = new GenerationResult(text, ids, prompt.length, reason, ttft, end - start, lps, promptLps);
        }

        private int last() {
            return generated[count - 1];
        }
    }

    /**
     * A generation to start.
     *
     * @param promptIds ids as given (nothing added)
     * @param op the adapter version's op, or {@link LinearOp#PLAIN}; rows of one version must share
     *     the same instance to share their update's computation
     * @param scoring log-probabilities to report, echo, and the cancellation poll ({@code null}: none)
     * @param onText text deltas of this row (on the calling thread); throwing from it ends the row
     */
    public record Request(int[] promptIds, GenerationConfig cfg, LinearOp op, Generator.Scoring scoring, Consumer<String> onText) {
        public Request {
            Objects.requireNonNull(promptIds, "promptIds");
            Objects.requireNonNull(cfg, "cfg");
            Objects.requireNonNull(op, "op");
            if (scoring == null) {
                scoring = Generator.Scoring.NONE;
            }
        }
    }

    /**
     * Starts one generation ({@link #join(List)} of one request).
     *
     * @throws IllegalArgumentException when the prompt is empty, too long or has ids outside the
     *     vocabulary (nothing joined)
     * @throws IllegalStateException when the batch is {@link #full}
     */
    public Row join(int[] promptIds, GenerationConfig cfg, LinearOp op, Generator.Scoring scoring, Consumer<String> onText) {
        Generator.checkPrompt(promptIds, model.config().maxPositionEmbeddings(), model.config().vocabSize());
        return join(List.of(new Request(promptIds, cfg, op, scoring, onText))).get(0);
    }

    /**
     * Starts generations: their prompts are prefilled together in one forward (right-padded to the
     * longest: under the causal mask a position never sees the padding after it, so each row gets
     * what its own prefill gives; echo scores each prompt from it), then each samples its first
     * token. A row is in the batch afterwards unless it ended already ({@link Row#done}: one token
     * asked for, EOS, a stop string, no tokens asked for, or a failure, such as an invalid prompt).
     *
     * @return the rows, in request order
     * @throws IllegalStateException when more requests than free rows are given
     */
    public List<Row> join(List<Request> requests) {
        if (live.size() + requests.size() > cache.slots()) {
            throw new IllegalStateException(requests.size() + " requests but " + (cache.slots() - live.size()) + " free rows");
        }
        Autograd.off(); // grad mode is per thread, and an actor may run on any thread of its dispatcher
        List<Row> rows = new ArrayList<>(requests.size());
        List<Row> prefill = new ArrayList<>();
        for (Request q : requests) {
            Row row = new Row(q.promptIds(), q.cfg(), q.op(), q.scoring(), q.onText());
            rows.add(row);
            try {
                Generator.checkPrompt(q.promptIds(), model.config().maxPositionEmbeddings(), model.config().vocabSize());
                if (row.scoring.echo()) {
                    row.promptLps.add(TokenLogprob.unscored(row.prompt[0]));
                }
                if (row.limit <= 0) {
                    scoreOnly(row);
                } else {
                    checkCancelled(row);
                    prefill.add(row);
                }
            } catch (Throwable t) {
                row.failure = t;
            }
        }
        if (!prefill.isEmpty()) {
            try {
                prefill(prefill);
            } catch (Throwable t) {
                for (Row r : prefill) {
                    if (!r.done()) {
                        r.failure = t;
                    }
                }
            }
        }
        return rows;
    }

    /** No tokens asked for: with echo, one forward over the prompt scores it. */
    private void scoreOnly(Row row) {
        if (row.scoring.echo()) {
            checkCancelled(row);
            try (NDManager step = root.newSubManager()) {
                NDArray out = model.forward(model.ids(step, new int[][] {row.prompt}), null, row.op); // (1, T, V)
                Generator.scorePrompt(out, row.prompt, row.scoring.topLogprobs(), row.promptLps);
            }
        }
        row.finish(GenerationResult.LENGTH, false);
    }

    /** One forward over the right-padded prompts; first tokens sampled; rows that go on get a slot. */
    private void prefill(List<Row> rows) {
        int b = rows.size();
        int t = 0;
        for (Row r : rows) {
            t = Math.max(t, r.prompt.length);
        }
        int[][] feed = new int[b][];
        List<LinearOp> ops = new ArrayList<>(b * t);
        for (int i = 0; i < b; i++) {
            feed[i] = Arrays.copyOf(rows.get(i).prompt, t); // padded with id 0, never seen by the prompt's positions
            for (int j = 0; j < t; j++) {
                ops.add(rows.get(i).op); // RowGroupedOp's rows are the (B*T) positions
            }
        }
        float[][] logits = new float[b][]; // (B, V)
        try (NDManager seq = root.newSubManager(); KvCache kv = new KvCache(seq, model.config().numHiddenLayers())) {
            try (NDManager step = kv.manager().newSubManager()) {
                NDArray out = model.forward(model.ids(step, feed), kv, RowGroupedOp.of(step, ops)); // (B, T, V)
                for (int i = 0; i < b; i++) {
                    Row r = rows.get(i);
                    logits[i] = out.get(new NDIndex("{}, {}, :", i, r.prompt.length - 1)).toFloatArray();
                    if (r.scoring.echo()) {
                        Generator.scorePrompt(out.get(new NDIndex("{}:{}", i, i + 1)), r.prompt, r.scoring.topLogprobs(), r.promptLps);
                    }
                }
            }
            for (int i = 0; i < b; i++) {
                Row r = rows.get(i);
                try {
                    r.accept(logits[i]);
                } catch (Throwable e) {
                    r.failure = e;
                }
                if (!r.done()) {
                    r.slot = live.size();
                    cache.load(r.slot, kv, i, r.prompt.length);
                    live.add(r);
                }
            }
        }
    }

    /**
     * One decode step: rows whose {@link Generator.Scoring#cancelled} turned true leave with a
     * {@link CancellationException}, then every other row gets its next token from one forward.
     *
     * @return the rows that left during this step (done; their slots are free again)
     */
    public List<Row> step() {
        List<Row> left = new ArrayList<>();
        for (Row r : live) {
            try {
                checkCancelled(r);
            } catch (Throwable t) {
                r.failure = t;
                left.add(r);
            }
        }
        compact();
        if (live.isEmpty()) {
            return left;
        }
        Autograd.off();
        int b = live.size();
        int vocab = model.config().vocabSize();
        float[] logits; // (B * V)
        try (NDManager step = root.newSubManager()) {
            int[][] feed = new int[b][];
            List<LinearOp> ops = new ArrayList<>(b);
            for (Row r : live) {
                feed[r.slot] = new int[] {r.last()};
                ops.add(r.op);
            }
            NDArray out = model.decode(model.ids(step, feed), cache, rowOps(ops)); // (B, V)
            logits = out.toFloatArray();
        } catch (RuntimeException e) {
            for (Row r : live) { // the forward itself failed: no row can go on
                r.failure = e;
                left.add(r);
            }
            compact();
            return left;
        }
        for (Row r : live) {
            try {
                r.accept(Arrays.copyOfRange(logits, r.slot * vocab, (r.slot + 1) * vocab));
            } catch (Throwable t) {
                r.failure = t;
            }
            if (r.done()) {
                left.add(r);
            }
        }
        compact();
        return left;
    }

    /**
     * The per-row op of the rows as they are: rebuilt only when a row joined or left, so that
     * what it prepares per module (adapter matrices side by side, row masks) serves every step in
     * between. Adapter values must not change while rows use them (served versions are immutable).
     */
    private LinearOp rowOps(List<LinearOp> ops) {
        if (rowOps == null || !sameOps(ops, composition)) {
            if (rowOpsManager != null) {
                rowOpsManager.close();
            }
            rowOpsManager = root.newSubManager();
            rowOps = RowGroupedOp.of(rowOpsManager, ops);
            composition = List.copyOf(ops);
        }
        return rowOps;
    }

    private static boolean sameOps(List<LinearOp> a, List<LinearOp> b) {
        if (a.size() != b.size()) {
            return false;
        }
        for (int i = 0; i < a.size(); i++) {
            if (a.get(i) != b.get(i)) {
                return false;
            }
        }
        return true;
    }

    /** Drops rows that are done and moves the others down so that slots 0..size-1 are used. */
    private void compact() {
        List<Row> keep = new ArrayList<>(live.size());
        for (Row r : live) {
            if (r.done()) {
                cache.free(r.slot);
                r.slot = -1;
            } else {
                keep.add(r);
            }
        }
        if (keep.size() == live.size()) {
            return;
        }
        for (int i = 0; i < keep.size(); i++) { // rows only move down, in order: no slot is overwritten before it moved
            Row r = keep.get(i);
            if (r.slot != i) {
                cache.move(r.slot, i);
                r.slot = i;
            }
        }
        live.clear();
        live.addAll(keep);
    }

    private static void checkCancelled(Row r) {
        if (r.scoring.cancelled().getAsBoolean()) {
            throw new CancellationException("generation cancelled");
        }
    }

    /** Frees the cache; rows still in the batch are dropped without a result. */
    @Override
    public void close() {
        live.clear();
        rowOps = null;
        composition = List.of();
        cache.close();
        root.close();
    }
}
