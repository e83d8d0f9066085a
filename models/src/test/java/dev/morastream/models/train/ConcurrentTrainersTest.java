package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.checkpoint.Tensor;
import dev.morastream.models.llama.LlamaModel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * Several trainers on one shared {@link LlamaModel}: each trains its own adapter, exactly as it
 * would alone, the base never changes, and their steps run at the same time (no global lock).
 */
class ConcurrentTrainersTest {
    static final int STEPS = 12;
    static final AdapterSpec ALPHA = AdapterSpec.mora(4, MoraVariant.ROTATION).withDropout(0.05);
    static final AdapterSpec BETA = AdapterSpec.lora(4, 8).withSeed(3);

    /** Domain alpha trains on batches 0..2, beta on 10..12: different data. */
    static TrainBatch data(AdapterSpec spec, int i) {
        return IncrementalTrainerTest.batch((spec == ALPHA ? 0 : 10) + i % 3);
    }

    static Map<String, float[]> values(AdapterSet set) {
        Map<String, float[]> out = new java.util.LinkedHashMap<>();
        set.trainable().forEach((k, a) -> out.put(k, a.toFloatArray()));
        return out;
    }

    /** The adapter a trainer reaches alone on its own model. */
    static Map<String, float[]> alone(AdapterSpec spec) {
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(1), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, spec, IncrementalTrainerTest.cfg())) {
            for (int i = 0; i < STEPS; i++) {
                tr.step(data(spec, i));
            }
            return values(tr.adapters());
        }
    }

    static void assertSameAdapter(Map<String, float[]> want, Map<String, float[]> got, float tol, String what) {
        assertEquals(want.keySet(), got.keySet());
        double moved = 0;
        for (String k : want.keySet()) {
            assertArrayEquals(want.get(k), got.get(k), tol, what + ": " + k);
            for (float v : got.get(k)) {
                moved += Math.abs(v);
            }
        }
        assertTrue(moved > 0, what + ": the adapter never changed");
    }

    static void assertBaseUnchanged(List<Tensor> before, LlamaModel model) {
        List<Tensor> after = model.toTensors();
        for (int i = 0; i < before.size(); i++) {
            assertArrayEquals(before.get(i).data(), after.get(i).data(), "base weight changed: " + before.get(i).name());
        }
    }

    @Test
    void twoTrainersSteppedAlternatelyOnOneModelEachTrainAsAlone() {
        Map<String, float[]> wantA = alone(ALPHA);
        Map<String, float[]> wantB = alone(BETA);
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(1), root);
                IncrementalTrainer a = new IncrementalTrainer(model, ALPHA, IncrementalTrainerTest.cfg());
                IncrementalTrainer b = new IncrementalTrainer(model, BETA, IncrementalTrainerTest.cfg())) {
            List<Tensor> base = model.toTensors();
            for (int i = 0; i < STEPS; i++) {
                a.step(data(ALPHA, i));
                b.step(data(BETA, i));
            }
            assertSameAdapter(wantA, values(a.adapters()), 0f, "alpha, alternating");
            assertSameAdapter(wantB, values(b.adapters()), 0f, "beta, alternating");
            assertBaseUnchanged(base, model);
        }
    }

    @Test
    void twoTrainersOnTwoThreadsStepAtTheSameTimeAndEachTrainAsAlone() throws Exception {
        Map<String, float[]> wantA = alone(ALPHA);
        Map<String, float[]> wantB = alone(BETA);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(1), root)) {
            List<Tensor> base = model.toTensors();
            CyclicBarrier together = new CyclicBarrier(2);
            List<Future<Result>> fs = new ArrayList<>();
            for (AdapterSpec spec : List.of(ALPHA, BETA)) {
                fs.add(pool.submit(() -> {
                    try (IncrementalTrainer tr = new IncrementalTrainer(model, spec, IncrementalTrainerTest.cfg())) {
                        long[][] spans = new long[STEPS][];
                        for (int i = 0; i < STEPS; i++) {
                            together.await(); // both start each step at once
                            long t0 = System.nanoTime();
                            tr.step(data(spec, i));
                            spans[i] = new long[] {t0, System.nanoTime()};
                        }
                        return new Result(values(tr.adapters()), spans);
                    }
                }));
            }
            Result ra = fs.get(0).get();
            Result rb = fs.get(1).get();
            assertSameAdapter(wantA, ra.adapter(), 1e-6f, "alpha, concurrent");
            assertSameAdapter(wantB, rb.adapter(), 1e-6f, "beta, concurrent");
            assertBaseUnchanged(base, model);
            int overlapping = 0;
            for (int i = 0; i < STEPS; i++) {
                long[] x = ra.spans()[i];
                long[] y = rb.spans()[i];
                if (x[0] < y[1] && y[0] < x[1]) {
                    overlapping++;
                }
            }
            // a global lock (DJL's JVM-wide GradientCollector, one trainer thread) would allow none
            assertTrue(overlapping >= STEPS / 2, "steps of the two trainers overlapped in " + overlapping + " of " + STEPS + " rounds");
        } finally {
            pool.shutdownNow();
        }
    }

    private record Result(Map<String, float[]> adapter, long[][] spans) {}

    @Test
    void whatWritesTheBaseRefusesASharedModel() {
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(1), root);
                AdapterSet shared = AdapterSet.create(model, AdapterSpec.mora(4, MoraVariant.SHARING))) {
            IllegalArgumentException full = assertThrows(IllegalArgumentException.class, () -> AdapterSet.create(model, AdapterSpec.full()));
            assertTrue(full.getMessage().contains("model copy of its own"), full.getMessage());
            IllegalStateException merge = assertThrows(IllegalStateException.class, shared::merge);
            assertTrue(merge.getMessage().contains("createOwning"), merge.getMessage());
            assertThrows(IllegalStateException.class, shared::absorb);
            try (IncrementalTrainer mora = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.SHARING), IncrementalTrainerTest.cfg());
                    IncrementalTrainer remora = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.SHARING),
                            IncrementalTrainerTest.cfg().withRemora(5, 1))) {
                assertTrue(!mora.writesBase() && remora.writesBase());
            }
        }
    }
}
