package dev.morastream.models.train;

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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IncrementalTrainerTest {
    static final LlamaConfig C = LlamaConfig.micro(ByteTokenizer.VOCAB);

    /** Base weights with enough scale that the model is not uniform. */
    static Map<String, Tensor> base(long seed) {
        Random r = new Random(seed);
        Map<String, Tensor> m = new LinkedHashMap<>();
        LlamaModel.expectedWeights(C).forEach((name, shape) -> {
            float[] d = new float[(int) Tensor.numel(shape)];
            for (int i = 0; i < d.length; i++) {
                d[i] = name.endsWith("norm.weight") ? 1f : (float) (r.nextGaussian() * 0.1);
            }
            m.put(name, new Tensor(name, shape, d));
        });
        return m;
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

    private static void exactResume(AdapterSpec spec, TrainerConfig cfg, Path dir) throws Exception {
        List<Double> straight;
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(3), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, spec, cfg)) {
            straight = run(tr, 0, 16);
        }
        List<Double> resumed;
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(3), root)) {
            try (IncrementalTrainer tr = new IncrementalTrainer(model, spec, cfg)) {
                resumed = new ArrayList<>(run(tr, 0, 8));
                TrainerCheckpoint.save(tr, dir, Map.of("offsets", "p0=8"), 2);
            }
        }
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(3), root)) {
            Path latest = TrainerCheckpoint.latest(dir).orElseThrow();
            assertEquals("p0=8", TrainerCheckpoint.info(latest).metadata().get("offsets"));
            try (IncrementalTrainer tr = TrainerCheckpoint.resume(model, spec, cfg, latest)) {
                assertEquals(4, tr.step());
                resumed.addAll(run(tr, 8, 16));
            }
        }
        for (int i = 0; i < straight.size(); i++) {
            assertEquals(straight.get(i), resumed.get(i), 1e-6, spec.label() + " loss at micro step " + i
                    + ": uninterrupted " + straight + " vs resumed " + resumed);
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
            float[] before = logits(model, root);
            tr.restart();
            float[] after = logits(model, root);
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
    void rotationCannotBeUsedWithReMora() {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(4), root)) {
            assertThrows(IllegalArgumentException.class,
                    () -> new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.ROTATION), cfg().withRemora(3, 1)));
        }
    }

    private static float[] logits(LlamaModel model, NDManager root) {
        try (NDManager m = root.newSubManager()) {
            NDArray x = model.ids(m, new int[][] {batch(0).tokens()[0]});
            return model.forward(x, null).toFloatArray();
        }
    }
}
