package dev.morastream.models.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.morastream.models.ShippedModel;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.BatchKvCache;
import dev.morastream.models.llama.KvCache;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.llama.RowGroupedOp;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CancellationException;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Continuous batching against its naive references: the batched decode step against one-sequence
 * forwards, per-row adapter selection against each adapter applied alone, and whole batched
 * generations (rows joining and leaving between steps) against {@link Generator} alone.
 */
class BatchedDecodeTest {
    private static NDManager root;
    private static LlamaModel peaked; // random micro model
    private static LlamaModel tiny; // the shipped model
    private static TextTokenizer tok;

    @BeforeAll
    static void setUp() {
        Autograd.off();
        root = NDManager.newBaseManager();
        peaked = TestModels.peaked(7, root);
        tiny = LlamaModel.load(ShippedModel.DIR, root);
        tok = TextTokenizer.forModel(ShippedModel.DIR, tiny.config());
    }

    @AfterAll
    static void tearDown() {
        peaked.close();
        tiny.close();
        root.close();
    }

    /** An adapter whose every trainable number is random (a fresh one is the base exactly). */
    private static AdapterSet randomAdapter(LlamaModel model, AdapterSpec spec, long seed, double std) {
        return AdapterSet.create(model, spec).randomize(seed, std);
    }

    private static int[] prompt(int n, long seed) {
        Random r = new Random(seed);
        int[] p = new int[n];
        for (int i = 0; i < n; i++) {
            p[i] = r.nextInt(256);
        }
        return p;
    }

    @Test
    void decodeStepLogitsEqualOneSequenceForwards() {
        try (AdapterSet mora = randomAdapter(peaked, AdapterSpec.mora(4, MoraVariant.ROTATION), 1, 0.3);
                AdapterSet lora = randomAdapter(peaked, AdapterSpec.lora(4, 8), 2, 0.3);
                NDManager m = root.newSubManager();
                BatchKvCache batch = new BatchKvCache(m, peaked.config(), 4)) {
            List<LinearOp> ops = List.of(mora.op(), LinearOp.PLAIN, lora.op(), mora.op());
            int[] lengths = {3, 9, 5, 1};
            List<KvCache> alone = new ArrayList<>();
            for (int r = 0; r < ops.size(); r++) {
                KvCache c = new KvCache(m, peaked.config().numHiddenLayers());
                try (NDManager s = c.manager().newSubManager()) {
                    peaked.forward(peaked.ids(s, new int[][] {prompt(lengths[r], r)}), c, ops.get(r));
                }
                batch.load(r, c);
                alone.add(c);
            }
            Random rnd = new Random(3);
            for (int step = 0; step < 3; step++) { // positions grow: the cache advances per row
                int[][] next = new int[ops.size()][];
                for (int r = 0; r < next.length; r++) {
                    next[r] = new int[] {rnd.nextInt(256)};
                }
                try (NDManager s = m.newSubManager()) {
                    float[][] got = new float[next.length][];
                    NDArray out = peaked.decode(peaked.ids(s, next), batch, RowGroupedOp.of(s, ops)); // (B, V)
                    assertEquals(new Shape(ops.size(), peaked.config().vocabSize()), out.getShape());
                    for (int r = 0; r < next.length; r++) {
                        got[r] = out.get(r).toFloatArray();
                        float[] want = peaked.forward(peaked.ids(s, new int[][] {next[r]}), alone.get(r), ops.get(r))
                                .get(new NDIndex("0, -1, :")).toFloatArray();
                        assertClose(want, got[r], 1e-4, "step " + step + " row " + r);
                        assertEquals(lengths[r] + step + 1, batch.length(r));
                    }
                }
            }
            alone.forEach(KvCache::close);
        }
    }

    @Test
    void rowGroupedOpEqualsEachAdapterApplyingItsOwnRows() {
        List<AdapterSet> sets = new ArrayList<>();
        try (NDManager m = root.newSubManager()) {
            long seed = 20;
            for (MoraVariant v : MoraVariant.values()) { // two versions of every geometry: batched K = 2
                sets.add(randomAdapter(peaked, AdapterSpec.mora(4, v), seed++, 0.3));
                sets.add(randomAdapter(peaked, AdapterSpec.mora(4, v), seed++, 0.3));
            }
            sets.add(randomAdapter(peaked, AdapterSpec.lora(4, 8), seed++, 0.3));
            sets.add(randomAdapter(peaked, AdapterSpec.lora(4, 4), seed++, 0.3)); // another alpha: another scale, same kind
            sets.add(randomAdapter(peaked, AdapterSpec.lora(2, 8), seed++, 0.3)); // another rank: another kind
            LinearOp twice = (module, x, w, b) -> LinearOp.PLAIN.apply(module, x, w, b).mul(x.getManager().full(new Shape(), 2f));
            List<LinearOp> ops = new ArrayList<>();
            ops.add(LinearOp.PLAIN);
            ops.add(twice); // not batchable: the gather path
            for (int i = 0; i < sets.size(); i++) {
                ops.add(sets.get(i).op());
                if (i % 3 == 0) {
                    ops.add(LinearOp.PLAIN);
                }
            }
            ops.add(sets.get(0).op()); // a version on two rows far apart
            ops.add(twice);
            LinearOp grouped = RowGroupedOp.of(m, ops);
            for (String module : List.of("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "lm_head")) {
                NDArray w = module.equals("lm_head") ? peaked.weight("model.embed_tokens.weight") : peaked.weight(module + ".weight");
                int dIn = (int) w.getShape().get(1);
                float[] xs = new float[ops.size() * dIn];
                Random r = new Random(module.hashCode());
                for (int i = 0; i < xs.length; i++) {
                    xs[i] = (float) r.nextGaussian();
                }
                NDArray x = m.create(xs, new Shape(ops.size(), dIn)); // (N, d_in)
                float[] got = grouped.apply(module, x, w, null).toFloatArray();
                int dOut = (int) w.getShape().get(0);
                for (int row = 0; row < ops.size(); row++) {
                    float[] want = ops.get(row).apply(module, x.get(row + ":" + (row + 1)), w, null).toFloatArray();
                    float[] have = java.util.Arrays.copyOfRange(got, row * dOut, (row + 1) * dOut);
                    assertClose(want, have, 1e-5, module + " row " + row);
                }
            }
            LinearOp one = sets.get(0).op();
            assertTrue(RowGroupedOp.of(m, List.of(one, one)) == one, "one version: its own op");
        } finally {
            sets.forEach(AdapterSet::close);
        }
    }

    /**
     * A frozen rotation set ({@link AdapterSet#freeze}: per-block matrices built once, what serving
     * loads) gives what the same unfrozen set gives, alone on fewer rows than R (where the unfrozen
     * one takes the elementwise compression) and batched with another frozen version and the base.
     */
    @Test
    void frozenRotationEqualsTheUnfrozenAloneAndBatched() {
        AdapterSpec spec = AdapterSpec.mora(4, MoraVariant.ROTATION);
        try (NDManager m = root.newSubManager();
                AdapterSet a = randomAdapter(peaked, spec, 40, 0.3);
                AdapterSet b = randomAdapter(peaked, spec, 41, 0.3);
                AdapterSet fa = randomAdapter(peaked, spec, 40, 0.3).freeze();
                AdapterSet fb = randomAdapter(peaked, spec, 41, 0.3).freeze()) {
            List<LinearOp> plain = List.of(a.op(), LinearOp.PLAIN, b.op(), a.op(), b.op());
            List<LinearOp> frozen = List.of(fa.op(), LinearOp.PLAIN, fb.op(), fa.op(), fb.op());
            LinearOp grouped = RowGroupedOp.of(m, frozen);
            for (String module : List.of("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                    "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj")) {
                NDArray w = peaked.weight(module + ".weight");
                int dIn = (int) w.getShape().get(1);
                int dOut = (int) w.getShape().get(0);
                float[] xs = new float[plain.size() * dIn];
                Random r = new Random(module.hashCode());
                for (int i = 0; i < xs.length; i++) {
                    xs[i] = (float) r.nextGaussian();
                }
                NDArray x = m.create(xs, new Shape(plain.size(), dIn)); // (N, d_in), N < R
                assertClose(a.op().apply(module, x, w, null).toFloatArray(), fa.op().apply(module, x, w, null).toFloatArray(), 1e-5,
                        module + " alone");
                float[] got = grouped.apply(module, x, w, null).toFloatArray();
                for (int row = 0; row < plain.size(); row++) {
                    float[] want = plain.get(row).apply(module, x.get(row + ":" + (row + 1)), w, null).toFloatArray();
                    assertClose(want, java.util.Arrays.copyOfRange(got, row * dOut, (row + 1) * dOut), 1e-5, module + " row " + row);
                }
            }
        }
    }

    /** One request of the batched-generation test and what it gets alone. */
    private record Ask(String prompt, GenerationConfig cfg, LinearOp op) {}

    @Test
    void batchedGenerationGivesEachRequestWhatItGetsAlone() {
        try (AdapterSet mora = randomAdapter(tiny, AdapterSpec.mora(8, MoraVariant.SHARING), 11, 0.02);
                AdapterSet rot = randomAdapter(tiny, AdapterSpec.mora(8, MoraVariant.ROTATION), 12, 0.02);
                AdapterSet lora = randomAdapter(tiny, AdapterSpec.lora(4, 8), 13, 0.05);
                AdapterSet lora2 = randomAdapter(tiny, AdapterSpec.lora(4, 8), 14, 0.05)) { // lora's kind: one batched GEMM
            GenerationConfig g = GenerationConfig.greedy(24).withStopOnEos(false);
            List<Ask> asks = List.of(
                    new Ask("Q: What is the capital of France?\nA:", g, LinearOp.PLAIN),
                    new Ask("Q: What is the capital of France?\nA:", g, mora.op()),
                    new Ask("Q: What is the capital of France?\nA:", g, lora.op()),
                    new Ask("The", GenerationConfig.greedy(9), rot.op()),
                    new Ask("Q: Who wrote Hamlet?\nA:", g.withStopStrings(List.of("\n")), mora.op()),
                    new Ask("Once upon a time, there was a", GenerationConfig.greedy(40).withStopStrings(List.of(".", "!")), LinearOp.PLAIN),
                    new Ask("Q: What is 2+2?\nA:", GenerationConfig.greedy(1), lora.op()),
                    new Ask("Q: Name a colour.\nA:", GenerationConfig.sampling(20, 0.9, 0.95, 42), rot.op()),
                    new Ask("Q: Name a colour.\nA:", GenerationConfig.sampling(20, 0.9, 1.0, 43), LinearOp.PLAIN),
                    new Ask("A", GenerationConfig.greedy(30).withStopOnEos(false), lora2.op()),
                    new Ask("Q: What is the capital of Spain?\nA:", g, lora2.op()));
            List<GenerationResult> alone = new ArrayList<>();
            for (Ask a : asks) {
                alone.add(new Generator(tiny, tok, a.op()).generate(tok.encodeFramed(a.prompt(), false), a.cfg(), null,
                        new Generator.Scoring(2, false, () -> false)));
            }
            List<String> outcomes = new ArrayList<>();
            alone.forEach(r -> outcomes.add(r.finishReason() + ":" + r.completionTokens()));
            // the mix must exercise every way out: stop strings, length, and more than one length
            assertTrue(outcomes.stream().distinct().count() >= 4, "outcomes: " + outcomes);

            GenerationResult[] batched = new GenerationResult[asks.size()];
            StringBuilder[] streamed = new StringBuilder[asks.size()];
            List<DecodeBatch.Row> rows = new ArrayList<>();
            try (DecodeBatch batch = new DecodeBatch(tiny, tok, 4)) { // fewer slots than requests: rows wait, join and leave
                int next = 0;
                int steps = 0;
                while (next < asks.size() || batch.size() > 0) {
                    // join at most two per step, in one prefill, so that joins happen while others decode
                    List<DecodeBatch.Request> now = new ArrayList<>();
                    for (int j = 0; j < 2 && next < asks.size() && batch.size() + now.size() < batch.capacity(); j++, next++) {
                        Ask a = asks.get(next);
                        StringBuilder sb = streamed[next] = new StringBuilder();
                        now.add(new DecodeBatch.Request(tok.encodeFramed(a.prompt(), false), a.cfg(), a.op(),
                                new Generator.Scoring(2, false, () -> false), sb::append));
                    }
                    rows.addAll(batch.join(now));
                    batch.step();
                    steps++;
                    assertTrue(steps < 500, "the batch never drained");
                }
            }
            for (int i = 0; i < asks.size(); i++) {
                DecodeBatch.Row row = rows.get(i);
                assertNull(row.failure(), "request " + i);
                batched[i] = row.result();
                GenerationResult want = alone.get(i);
                assertArrayEquals(want.tokenIds(), batched[i].tokenIds(), "tokens of request " + i + " (" + asks.get(i).prompt() + ")");
                assertEquals(want.text(), batched[i].text(), "text of request " + i);
                assertEquals(want.text(), streamed[i].toString(), "streamed text of request " + i);
                assertEquals(want.finishReason(), batched[i].finishReason(), "finish of request " + i);
                assertEquals(want.promptTokens(), batched[i].promptTokens());
                for (int t = 0; t < want.logprobs().size(); t++) {
                    assertEquals(want.logprobs().get(t).logprob(), batched[i].logprobs().get(t).logprob(), 1e-4);
                    assertArrayEquals(want.logprobs().get(t).topIds(), batched[i].logprobs().get(t).topIds());
                }
            }
        }
    }

    @Test
    void echoScoresThePromptAsAloneInOnePrefillWithOthers() {
        int[] ids = tok.encodeFramed("Q: What is the capital of France?\nA:", false);
        int[] other = tok.encodeFramed("Once upon a time", false);
        Generator.Scoring echo = new Generator.Scoring(1, true, () -> false);
        List<GenerationConfig> cfgs = List.of(GenerationConfig.greedy(0), GenerationConfig.greedy(5).withStopOnEos(false));
        List<GenerationResult> want = new ArrayList<>();
        for (GenerationConfig c : cfgs) {
            want.add(new Generator(tiny, tok).generate(ids, c, null, echo));
            want.add(new Generator(tiny, tok).generate(other, c, null, echo));
        }
        try (DecodeBatch batch = new DecodeBatch(tiny, tok, 4)) {
            List<DecodeBatch.Request> qs = new ArrayList<>();
            for (GenerationConfig c : cfgs) {
                qs.add(new DecodeBatch.Request(ids, c, LinearOp.PLAIN, echo, null));
                qs.add(new DecodeBatch.Request(other, c, LinearOp.PLAIN, echo, null));
            }
            List<DecodeBatch.Row> rows = batch.join(qs);
            while (batch.size() > 0) {
                batch.step();
            }
            for (int i = 0; i < rows.size(); i++) {
                GenerationResult got = rows.get(i).result();
                assertArrayEquals(want.get(i).tokenIds(), got.tokenIds(), "request " + i);
                assertEquals(want.get(i).promptLogprobs().size(), got.promptLogprobs().size());
                for (int t = 1; t < want.get(i).promptLogprobs().size(); t++) {
                    assertEquals(want.get(i).promptLogprobs().get(t).logprob(), got.promptLogprobs().get(t).logprob(), 1e-4);
                    assertArrayEquals(want.get(i).promptLogprobs().get(t).topIds(), got.promptLogprobs().get(t).topIds());
                }
            }
        }
    }

    @Test
    void aCancelledOrFailingRowLeavesAndTheOthersGoOn() {
        GenerationConfig cfg = GenerationConfig.greedy(12).withStopOnEos(false);
        int[] ids = tok.encodeFramed("Q: What is the capital of France?\nA:", false);
        GenerationResult want = new Generator(tiny, tok).generate(ids, cfg, null, Generator.Scoring.NONE);
        AtomicBoolean cancel = new AtomicBoolean();
        try (DecodeBatch batch = new DecodeBatch(tiny, tok, 3)) {
            DecodeBatch.Row keeps = batch.join(ids, cfg, LinearOp.PLAIN, Generator.Scoring.NONE, null);
            DecodeBatch.Row cancelled = batch.join(ids, cfg, LinearOp.PLAIN, new Generator.Scoring(0, false, cancel::get), null);
            int[] deltas = {0};
            DecodeBatch.Row throwing = batch.join(ids, cfg, LinearOp.PLAIN, Generator.Scoring.NONE, d -> {
                if (++deltas[0] == 3) {
                    throw new IllegalStateException("client gone");
                }
            });
            batch.step();
            cancel.set(true);
            while (!keeps.done()) {
                batch.step();
            }
            assertInstanceOf(CancellationException.class, cancelled.failure());
            assertInstanceOf(IllegalStateException.class, throwing.failure());
            assertEquals(0, batch.size());
            assertArrayEquals(want.tokenIds(), keeps.result().tokenIds());
        }
    }

    private static void assertClose(float[] want, float[] got, double tol, String what) {
        assertEquals(want.length, got.length, what);
        double worst = 0;
        for (int i = 0; i < want.length; i++) {
            worst = Math.max(worst, Math.abs(want[i] - got[i]));
        }
        assertTrue(worst <= tol, what + ": max |diff| " + worst);
    }
}
