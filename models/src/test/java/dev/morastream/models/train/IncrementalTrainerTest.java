package dev.morastream.models.train;

import dev.morastream.models.llama.TestWeights;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraLayer;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.checkpoint.Tensor;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IncrementalTrainerTest {
    static final LlamaConfig C = LlamaConfig.micro(ByteTokenizer.VOCAB);

    /** Base weights with enough scale that the model is not uniform. */
    static Map<String, Tensor> base(long seed) {
        return TestWeights.random(C, seed, 0.1, 0);
    }

    /** Deterministic batches of byte text: "key:value" facts. */
    static TrainBatch batch(int i) {
        ByteTokenizer tok = new ByteTokenizer();
        Random r = new Random(1000 + i);
        int[][] rows = new int[4][];
        for (int b = 0; b < rows.length; b++) {
            StringBuilder sb = new StringBuilder();
            while (sb.length() < 40) {
                sb.append((char) ('a' + r.nextInt(6))).append(':').append(r.nextInt(90) + 10).append('\n');
            }
            int[] ids = tok.encode(sb.substring(0, 32));
            rows[b] = new int[33];
            rows[b][0] = ByteTokenizer.BOS;
            System.arraycopy(ids, 0, rows[b], 1, 32);
        }
        return TrainBatch.of(rows);
    }

    static TrainerConfig cfg() {
        return new TrainerConfig(5e-3, LrSchedule.Kind.COSINE, 3, 40, 0.1, 0.01, 1.0, 2, false, true, 0, 2);
    }

    @Test
    void frozenBaseWeightsAreBitIdenticalAfterTraining() {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(1), root)) {
            List<Tensor> before = model.toTensors();
            try (IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.ROTATION).withDropout(0.05), cfg())) {
                double first = tr.step(batch(0)).lossBefore();
                StepResult last = null;
                for (int i = 1; i < 30; i++) {
                    last = tr.step(batch(i % 3));
                }
                assertTrue(last.lossBefore() < first, "loss did not fall: " + first + " -> " + last.lossBefore());
                List<Tensor> after = model.toTensors();
                for (int i = 0; i < before.size(); i++) {
                    assertArrayEquals(before.get(i).data(), after.get(i).data(), "base weight changed: " + before.get(i).name());
                }
            }
        }
    }

    @Test
    void lossBeforeAndAfterTheUpdateAreReported() {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(2), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.lora(4, 8), TrainerConfig.constant(1e-2))) {
            StepResult s = tr.step(batch(0));
            assertTrue(s.updated());
            assertEquals(1, s.step());
            assertTrue(s.lossAfter() < s.lossBefore(), "one step on a batch should lower its loss: " + s);
            assertEquals(s.lossAfter(), tr.evaluate(batch(0)), 1e-5);
        }
    }

    private static List<Double> run(IncrementalTrainer tr, int from, int to) {
        List<Double> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(tr.step(batch(i % 5)).lossBefore());
        }
        return out;
    }

    /**
     * Tolerance of "the same losses" over the eight steps after a resume. Training here is bitwise
     * repeatable on an idle machine, but under CPU contention two identical runs in one JVM were
     * seen to drift apart in the last bits (PyTorch CPU kernels), which Adam's sign-like early
     * updates can amplify. The resumed state itself is therefore compared bit for bit (the proof
     * that nothing is lost), the first resumed loss to 1e-6, and the later losses to this bound.
     */
    static final double SAME = 3e-2;

    /** Trains to micro step 8, checkpoints, resumes into a second model, then runs both in lockstep. */
    private static void exactResume(AdapterSpec spec, TrainerConfig cfg, Path dir) throws Exception {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel m1 = LlamaModel.fromTensors(C, base(3), root);
                LlamaModel m2 = LlamaModel.fromTensors(C, base(3), root);
                IncrementalTrainer straight = new IncrementalTrainer(m1, spec, cfg)) {
            run(straight, 0, 8);
            TrainerCheckpoint.save(straight, dir, Map.of("offsets", "p0=8"), 2);
            Path latest = TrainerCheckpoint.latest(dir).orElseThrow();
            assertEquals("p0=8", TrainerCheckpoint.info(latest).metadata().get("offsets"));
            try (IncrementalTrainer resumed = TrainerCheckpoint.resume(m2, spec, cfg, latest)) {
                assertSameState(straight, resumed, spec.label());
                List<Double> a = run(straight, 8, 16);
                List<Double> b = run(resumed, 8, 16);
                assertEquals(a.get(0), b.get(0), 1e-6, spec.label() + ": first loss after resume");
                for (int i = 0; i < a.size(); i++) {
                    assertEquals(a.get(i), b.get(i), SAME, spec.label() + ": uninterrupted " + a + " vs resumed " + b);
                }
            }
        }
    }

    /** Everything that determines the next steps is bitwise equal. */
    static void assertSameState(IncrementalTrainer x, IncrementalTrainer y, String label) {
        assertEquals(x.step(), y.step(), label);
        assertEquals(x.microStep(), y.microStep(), label);
        assertEquals(x.restarts(), y.restarts(), label);
        assertEquals(x.currentLr(), y.currentLr(), label);
        assertEquals(x.adapters().spec().label(), y.adapters().spec().label(), label);
        assertEquals(x.adapters().trainable().keySet(), y.adapters().trainable().keySet(), label);
        x.adapters().trainable().forEach((k, v) ->
                assertArrayEquals(v.toFloatArray(), y.adapters().trainable().get(k).toFloatArray(), label + " " + k));
        x.model().weights().forEach((k, v) ->
                assertArrayEquals(v.toFloatArray(), y.model().weight(k).toFloatArray(), label + " base " + k));
        AdamW.State sx = x.optimizer().state();
        AdamW.State sy = y.optimizer().state();
        assertEquals(sx.step(), sy.step(), label + " optimizer step");
        assertEquals(sx.m().keySet(), sy.m().keySet(), label);
        sx.m().forEach((k, v) -> assertArrayEquals(v, sy.m().get(k), label + " m " + k));
        sx.v().forEach((k, v) -> assertArrayEquals(v, sy.v().get(k), label + " v " + k));
    }

    @Test
    void aResumeThatLosesStateIsDetected(@TempDir Path dir) throws Exception {
        AdapterSpec spec = AdapterSpec.mora(4, MoraVariant.ROTATION);
        try (NDManager root = NDManager.newBaseManager(); LlamaModel m1 = LlamaModel.fromTensors(C, base(3), root);
                LlamaModel m2 = LlamaModel.fromTensors(C, base(3), root);
                IncrementalTrainer straight = new IncrementalTrainer(m1, spec, cfg())) {
            run(straight, 0, 8);
            TrainerCheckpoint.save(straight, dir, Map.of(), 1);
            try (IncrementalTrainer resumed = TrainerCheckpoint.resume(m2, spec, cfg(), TrainerCheckpoint.latest(dir).orElseThrow())) {
                resumed.optimizer().reset(resumed.adapters().trainable().keySet());
                assertThrows(AssertionError.class, () -> assertSameState(straight, resumed, "dropped moments"));
            }
        }
    }

    @Test
    void resumedRunProducesTheSameLosses(@TempDir Path dir) throws Exception {
        exactResume(AdapterSpec.mora(4, MoraVariant.ROTATION).withDropout(0.1).withSeed(5), cfg(), dir.resolve("mora"));
        exactResume(AdapterSpec.lora(4, 8).withDropout(0.1), cfg(), dir.resolve("lora"));
    }

    @Test
    void resumeAcrossReMoraRestartsIsExact(@TempDir Path dir) throws Exception {
        TrainerConfig c = cfg().withRemora(3, 1);
        exactResume(AdapterSpec.mora(4, MoraVariant.SHARING), c, dir.resolve("remora"));
        exactResume(AdapterSpec.lora(4, 8), c, dir.resolve("relora"));
    }

    @Test
    void remoraMergeKeepsOutputSwitchesTypeAndZeroesM() {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(4), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.SHARING),
                        TrainerConfig.constant(1e-2).withRemora(1000, 5))) {
            run(tr, 0, 6);
            float[] before = logits(model, tr, root);
            tr.restart();
            float[] after = logits(model, tr, root);
            double maxErr = 0;
            for (int i = 0; i < before.length; i++) {
                maxErr = Math.max(maxErr, Math.abs(before[i] - after[i]));
            }
            assertTrue(maxErr < 1e-4, "output changed by the merge: " + maxErr);
            for (var l : tr.adapters().layers().values()) {
                MoraLayer ml = (MoraLayer) l;
                assertEquals(MoraVariant.CONTIGUOUS, ml.geometry().variant());
                assertEquals(0f, ml.matrix().abs().max().getFloat());
            }
            assertEquals(1, tr.restarts());
            assertTrue(tr.currentLr() < 1e-2, "schedule restarts with warmup: " + tr.currentLr());
        }
    }

    @Test
    void gradientAccumulationEqualsOneBigBatch() {
        TrainBatch b1 = batch(1);
        TrainBatch b2 = batch(2);
        int[][] both = new int[b1.tokens().length + b2.tokens().length][];
        System.arraycopy(b1.tokens(), 0, both, 0, b1.tokens().length);
        System.arraycopy(b2.tokens(), 0, both, b1.tokens().length, b2.tokens().length);
        TrainerConfig c = TrainerConfig.constant(1e-2).withWeightDecay(0.01);
        try (NDManager root = NDManager.newBaseManager(); LlamaModel m1 = LlamaModel.fromTensors(C, base(6), root);
                LlamaModel m2 = LlamaModel.fromTensors(C, base(6), root);
                IncrementalTrainer acc = new IncrementalTrainer(m1, AdapterSpec.lora(4, 8), c.withGradAccum(2));
                IncrementalTrainer big = new IncrementalTrainer(m2, AdapterSpec.lora(4, 8), c)) {
            assertTrue(!acc.step(b1).updated());
            assertTrue(acc.step(b2).updated());
            assertTrue(big.step(TrainBatch.of(both)).updated());
            acc.adapters().trainable().forEach((k, v) -> {
                float[] x = v.toFloatArray();
                float[] y = big.adapters().trainable().get(k).toFloatArray();
                for (int i = 0; i < x.length; i++) {
                    assertEquals(y[i], x[i], 1e-5, k);
                }
            });
        }
    }

    @Test
    void completionOnlyLossCountsOnlyCompletionTokens() {
        TrainBatch b = batch(3);
        int rows = b.tokens().length;
        int t = b.tokens()[0].length - 1;
        float[][] completion = new float[rows][t];
        for (float[] row : completion) {
            for (int j = t / 2; j < t; j++) {
                row[j] = 1f; // second half of each sequence is the "completion"
            }
        }
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(7), root);
                IncrementalTrainer only = new IncrementalTrainer(model, AdapterSpec.lora(4, 8),
                        TrainerConfig.constant(1e-3).withCompletionOnly(true))) {
            double onCompletion = only.evaluate(new TrainBatch(b.tokens(), null, completion));
            double viaMask = only.evaluate(new TrainBatch(b.tokens(), completion, null));
            double all = only.evaluate(b);
            assertEquals(viaMask, onCompletion, 1e-6);
            assertTrue(Math.abs(all - onCompletion) > 1e-4, "completion-only loss equals the all-token loss");
        }
    }

    @Test
    void trainsOnAFreshThreadWhereAutogradStartsOn() throws Exception {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(8), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.ROTATION),
                        TrainerConfig.constant(1e-2))) {
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newSingleThreadExecutor();
            try {
                StepResult r = pool.submit(() -> {
                    tr.step(batch(0));
                    return tr.step(batch(0));
                }).get();
                assertEquals(2, r.step());
                assertTrue(r.lossAfter() < r.lossBefore(), r.toString());
            } finally {
                pool.shutdown();
            }
        }
    }

    @Test
    void rotationCannotBeUsedWithReMora() {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(4), root)) {
            assertThrows(IllegalArgumentException.class,
                    () -> new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.ROTATION), cfg().withRemora(3, 1)));
        }
    }

    private static float[] logits(LlamaModel model, IncrementalTrainer tr, NDManager root) {
        try (NDManager m = root.newSubManager()) {
            NDArray x = model.ids(m, new int[][] {batch(0).tokens()[0]});
            return model.forward(x, null, tr.op()).toFloatArray();
        }
    }
}
