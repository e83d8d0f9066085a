package dev.morastream.models.adapters;

import dev.morastream.models.llama.TestWeights;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.models.checkpoint.CheckpointException;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.checkpoint.Safetensors;
import dev.morastream.models.checkpoint.Tensor;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AdapterModelTest {
    static final LlamaConfig C = LlamaConfig.micro(61);
    static final int[] IDS = {1, 5, 9, 33, 2, 60, 7, 7, 12};

    static Map<String, Tensor> base() {
        return TestWeights.random(C, 11, 0.2, 0);
    }

    static float[] logits(LlamaModel model) {
        return logits(model, LinearOp.PLAIN);
    }

    static float[] logits(LlamaModel model, LinearOp op) {
        try (NDManager m = model.manager().newSubManager()) {
            return model.forward(model.ids(m, new int[][] {IDS}), null, op).toFloatArray();
        }
    }

    static float[] logits(LlamaModel model, AdapterSet set) {
        return logits(model, set.op());
    }

    static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }

    static void randomize(AdapterSet set, long seed) {
        set.randomize(seed, 0.05);
    }

    static List<AdapterSpec> everyMethod() {
        List<AdapterSpec> out = new ArrayList<>();
        for (MoraVariant v : MoraVariant.values()) {
            out.add(AdapterSpec.mora(3, v));
        }
        out.add(AdapterSpec.lora(3, 6));
        return out;
    }

    @Test
    void mergedEqualsUnmergedAndUnmergeRestoresTheBase() {
        for (AdapterSpec spec : everyMethod()) {
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root)) {
                List<Tensor> base = model.toTensors();
                float[] plain = logits(model);
                try (AdapterSet set = AdapterSet.createOwning(model, spec)) {
                    assertTrue(maxDiff(plain, logits(model, set)) == 0, spec.label() + ": zero-initialised adapter changed the output");
                    randomize(set, 3);
                    float[] unmerged = logits(model, set);
                    assertTrue(maxDiff(plain, unmerged) > 1e-3, spec.label() + ": adapter has no effect");
                    set.merge();
                    assertTrue(maxDiff(unmerged, logits(model, set)) < 1e-4,
                            spec.label() + ": merged differs from unmerged by " + maxDiff(unmerged, logits(model, set)));
                    set.unmerge();
                    List<Tensor> after = model.toTensors();
                    for (int i = 0; i < base.size(); i++) {
                        assertTrue(maxDiff(base.get(i).data(), after.get(i).data()) < 1e-6,
                                spec.label() + ": unmerge did not restore " + base.get(i).name());
                    }
                    assertTrue(maxDiff(unmerged, logits(model, set)) < 1e-5);
                }
                assertTrue(maxDiff(plain, logits(model)) < 1e-4, spec.label() + ": closing did not restore the base (up to float error)");
            }
        }
    }

    @Test
    void detachedVersionsServeConcurrentlyOnOneModel() throws Exception {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root);
                AdapterSet a = AdapterSet.create(model, AdapterSpec.mora(3, MoraVariant.ROTATION));
                AdapterSet b = AdapterSet.create(model, AdapterSpec.lora(3, 6))) {
            randomize(a, 1);
            randomize(b, 2);
            float[] plain = logits(model);
            float[] wantA = logits(model, a);
            float[] wantB = logits(model, b);
            assertTrue(maxDiff(wantA, wantB) > 1e-3 && maxDiff(plain, wantA) > 1e-3);
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(3);
            try {
                List<java.util.concurrent.Future<Double>> fs = new ArrayList<>();
                Object[][] jobs = {{a.op(), wantA}, {b.op(), wantB}, {dev.morastream.models.llama.LinearOp.PLAIN, plain}};
                for (Object[] job : jobs) {
                    fs.add(pool.submit(() -> {
                        double worst = 0;
                        for (int i = 0; i < 20; i++) {
                            try (NDManager m = root.newSubManager()) {
                                float[] got = model.forward(model.ids(m, new int[][] {IDS}), null,
                                        (dev.morastream.models.llama.LinearOp) job[0]).toFloatArray();
                                worst = Math.max(worst, maxDiff((float[]) job[1], got));
                            }
                        }
                        return worst;
                    }));
                }
                for (java.util.concurrent.Future<Double> f : fs) {
                    assertTrue(f.get() < 1e-5, "a concurrent request saw another version's output: " + f.get());
                }
            } finally {
                pool.shutdown();
            }
        }
    }

    @Test
    void trainableParametersMatchLoraBudget() {
        int[][] shapes = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {4096, 1024}, {2048, 8192}, {256, 704}, {256, 128}, {576, 1536}};
        int[] ranks = {1, 4, 8, 16, 64, 256};
        for (MoraVariant v : MoraVariant.values()) {
            for (int[] s : shapes) {
                for (int r : ranks) {
                    MoraGeometry g = MoraGeometry.of(v, s[0], s[1], r);
                    long lora = (long) r * (s[0] + s[1]);
                    long mora = g.trainableParameters();
                    // R rounds sqrt(lora) to the nearest integer (|R^2 - lora| <= R); rounding that
                    // down to even moves R by up to 1.5 more, so |R^2 - lora| <= 3R + 3
                    long bound = v.evenRank() ? 3L * g.rank() + 3 : g.rank();
                    assertTrue(Math.abs(mora - lora) <= bound, v + " " + s[0] + "x" + s[1] + " r=" + r + ": R^2=" + mora + " vs " + lora);
                    if (lora >= 100_000) {
                        assertTrue(Math.abs(mora - lora) / (double) lora < 0.01, "parity beyond 1% at " + s[0] + "x" + s[1] + " r=" + r);
                    }
                }
            }
        }
        assertEquals(348, MoraGeometry.of(MoraVariant.SHARING, 4096, 11008, 8).rank(), "spec example: round half up");
        assertEquals(348, MoraGeometry.of(MoraVariant.ROTATION, 4096, 11008, 8).rank());
        assertEquals(256 * 256, MoraGeometry.of(MoraVariant.SHARING, 4096, 4096, 8).trainableParameters());
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root);
                AdapterSet mora = AdapterSet.create(model, AdapterSpec.mora(8, MoraVariant.SHARING))) {
            long lora = 0;
            for (AdapterLayer l : mora.layers().values()) {
                lora += 8L * (l.dIn() + l.dOut());
            }
            assertTrue(Math.abs(mora.trainableParameters() - lora) / (double) lora < 0.05,
                    "model-level MoRA " + mora.trainableParameters() + " vs LoRA " + lora);
        }
    }

    @Test
    void updateRankOfMoraFarExceedsLoraOfTheSameBudget() {
        int dIn = 64;
        int dOut = 64;
        int r = 4;
        Random rnd = new Random(5);
        try (NDManager m = NDManager.newBaseManager()) {
            for (MoraVariant v : List.of(MoraVariant.ROTATION, MoraVariant.DECOUPLING, MoraVariant.SHARING)) {
                AdapterLayer mora = MoraEquivalenceTest.layer(v.id(), dIn, dOut, r, m, rnd);
                AdapterLayer lora = MoraEquivalenceTest.layer("lora", dIn, dOut, r, m, rnd);
                int rm = Rank.numericRank(mora.explicitDelta(), dOut, dIn, 1e-4);
                int rl = Rank.numericRank(lora.explicitDelta(), dOut, dIn, 1e-4);
                assertTrue(rl <= r, "LoRA rank " + rl);
                int big = ((MoraLayer) mora).geometry().rank();
                if (v != MoraVariant.SHARING) {
                    assertTrue(rm >= 3 * rl, v + ": MoRA rank " + rm + " vs LoRA " + rl);
                }
                assertTrue(rm >= Math.min(big, dIn) - 1, v + ": rank " + rm + " below R=" + big);
            }
        }
    }

    @Test
    void trainedRotationAndDecouplingUpdatesHaveFarHigherRankThanLora() {
        LlamaConfig c = LlamaConfig.micro(259);
        Map<String, Tensor> w = new LinkedHashMap<>();
        Random r = new Random(2);
        LlamaModel.expectedWeights(c).forEach((name, shape) -> {
            float[] d = new float[(int) Tensor.numel(shape)];
            for (int i = 0; i < d.length; i++) {
                d[i] = name.endsWith("norm.weight") ? 1f : (float) (r.nextGaussian() * 0.1);
            }
            w.put(name, new Tensor(name, shape, d));
        });
        int[][] rows = new int[4][33];
        for (int[] row : rows) {
            for (int j = 0; j < row.length; j++) {
                row[j] = r.nextInt(256);
            }
        }
        dev.morastream.models.train.TrainBatch batch = dev.morastream.models.train.TrainBatch.of(rows);
        String module = "model.layers.0.self_attn.q_proj"; // 32 x 32
        int[] ranks = new int[3];
        AdapterSpec[] specs = {AdapterSpec.lora(2, 4), AdapterSpec.mora(2, MoraVariant.ROTATION), AdapterSpec.mora(2, MoraVariant.DECOUPLING)};
        for (int k = 0; k < specs.length; k++) {
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(c, w, root);
                    dev.morastream.models.train.IncrementalTrainer tr = new dev.morastream.models.train.IncrementalTrainer(
                            model, specs[k], dev.morastream.models.train.TrainerConfig.constant(1e-2))) {
                for (int i = 0; i < 10; i++) {
                    tr.step(batch);
                }
                ranks[k] = Rank.numericRank(tr.adapters().layers().get(module).explicitDelta(), 32, 32, 1e-4);
            }
        }
        System.out.println("rank of trained dW (32x32 q_proj, budget r=2): lora " + ranks[0] + ", rotation " + ranks[1]
                + ", decoupling " + ranks[2]);
        assertTrue(ranks[0] <= 2, "LoRA r=2 rank " + ranks[0]);
        assertTrue(ranks[1] >= 5 * ranks[0] && ranks[2] >= 5 * ranks[0], "MoRA ranks " + ranks[1] + ", " + ranks[2]);
    }

    @Test
    void peftRoundTripKeepsOutputAndNames(@TempDir Path dir) throws Exception {
        for (AdapterSpec spec : everyMethod()) {
            Path d = dir.resolve(spec.label());
            float[] want;
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root);
                    AdapterSet set = AdapterSet.createOwning(model, spec)) {
                randomize(set, 9);
                want = logits(model, set);
                AdapterFiles.save(set, d, "tiny");
            }
            JsonNode cfg = new ObjectMapper().readTree(d.resolve(AdapterFiles.CONFIG).toFile());
            assertEquals("LORA", cfg.get("peft_type").asText());
            if (spec.method() == AdapterSpec.Method.MORA) {
                assertTrue(cfg.get("use_mora").asBoolean());
                assertTrue(cfg.has("mora_type"));
            }
            try (Safetensors.Reader r = Safetensors.open(d.resolve(AdapterFiles.WEIGHTS))) {
                assertTrue(r.entries().containsKey("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
                assertTrue(r.entries().containsKey("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
            }
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root);
                    AdapterSet set = AdapterFiles.load(d, model)) {
                assertEquals(spec.label(), set.spec().label());
                assertEquals(0.0, maxDiff(want, logits(model, set)), spec.label() + " after reload");
            }
        }
    }

    @Test
    void handWrittenPeftLoraFileGivesTheExpectedOutput(@TempDir Path dir) throws Exception {
        // A LoRA on layer 0's v_proj only, r = 2, alpha = 4 (scale 2), with known A and B.
        Files.writeString(dir.resolve("adapter_config.json"), """
                {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0,
                 "target_modules": ["v_proj"], "base_model_name_or_path": "micro", "bias": "none"}
                """);
        int dIn = C.hiddenSize();
        int dOut = C.numKeyValueHeads() * C.headDim();
        float[] a = new float[2 * dIn];
        float[] b = new float[dOut * 2];
        for (int i = 0; i < a.length; i++) {
            a[i] = ((i % 7) - 3) * 0.01f;
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = ((i % 5) - 2) * 0.1f;
        }
        List<Tensor> ts = new ArrayList<>();
        for (int layer = 0; layer < C.numHiddenLayers(); layer++) {
            String p = "base_model.model.model.layers." + layer + ".self_attn.v_proj.";
            ts.add(new Tensor(p + "lora_A.weight", new long[] {2, dIn}, layer == 0 ? a : new float[a.length]));
            ts.add(new Tensor(p + "lora_B.weight", new long[] {dOut, 2}, layer == 0 ? b : new float[b.length]));
        }
        Safetensors.write(dir.resolve("adapter_model.safetensors"), ts, DType.F32, Map.of("format", "pt"));
        // expected: the base with W_v0 += 2 * B A, computed here by hand
        Map<String, Tensor> merged = base();
        String wv = "model.layers.0.self_attn.v_proj.weight";
        float[] w = merged.get(wv).data().clone();
        for (int o = 0; o < dOut; o++) {
            for (int i = 0; i < dIn; i++) {
                w[o * dIn + i] += 2 * (b[o * 2] * a[i] + b[o * 2 + 1] * a[dIn + i]);
            }
        }
        merged.put(wv, new Tensor(wv, merged.get(wv).shape(), w));
        float[] want;
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, merged, root)) {
            want = logits(model);
        }
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root);
                AdapterSet set = AdapterFiles.load(dir, model)) {
            assertEquals(AdapterSpec.Method.LORA, set.spec().method());
            assertEquals(2, set.layers().size());
            assertTrue(maxDiff(want, logits(model, set)) < 1e-5, "hand-written LoRA: " + maxDiff(want, logits(model, set)));
        }
    }

    @Test
    void adapterOfTheWrongShapeIsAClearError(@TempDir Path dir) throws Exception {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, base(), root);
                AdapterSet set = AdapterSet.create(model, AdapterSpec.lora(3, 6))) {
            AdapterFiles.save(set, dir, "micro");
        }
        LlamaConfig wider = new LlamaConfig(48, 48, 2, 4, 2, 12, 61, 64, 1e-5, 10000, null, true, false, false, -1, List.of());
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.random(wider, 1, root)) {
            CheckpointException e = assertThrows(CheckpointException.class, () -> AdapterFiles.load(dir, model));
            assertTrue(e.getMessage().contains("wrong shape"), e.getMessage());
            assertEquals(0.0, maxDiff(logits(model), logits(model)));
        }
    }
}
