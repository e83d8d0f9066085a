package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LlamaModel;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The trainer's KL-to-base term: value, sign, gradient, and where it counts. */
class KlToBaseTest {
    /** {@link IncrementalTrainerTest#batch} with rows 2 and 3 flagged as base rows. */
    static TrainBatch withBaseRows(int i) {
        TrainBatch b = IncrementalTrainerTest.batch(i);
        return new TrainBatch(b.tokens(), null, null, new boolean[] {false, false, true, true});
    }

    static TrainerConfig cfg(double klWeight) {
        return TrainerConfig.constant(1e-2).withKl(klWeight, false);
    }

    @Test
    void zeroForAZeroInitialisedAdapterAndPositiveAfterTraining() {
        for (AdapterSpec spec : List.of(AdapterSpec.mora(4, MoraVariant.SHARING), AdapterSpec.lora(4, 8))) {
            try (NDManager root = NDManager.newBaseManager();
                    LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(3), root);
                    IncrementalTrainer tr = new IncrementalTrainer(model, spec, cfg(0.5))) {
                StepResult first = tr.step(withBaseRows(0));
                assertEquals(0.0, first.klToBase(), 1e-6, spec + ": an adapter that is zero is the base");
                StepResult last = first;
                for (int i = 1; i < 10; i++) {
                    last = tr.step(withBaseRows(i % 3));
                }
                assertTrue(last.klToBase() > 1e-4, spec + ": trained adapter, KL to base " + last.klToBase());
                // no base rows and no prompts: the term is off for that batch
                assertTrue(Double.isNaN(tr.step(IncrementalTrainerTest.batch(5)).klToBase()));
            }
        }
    }

    @Test
    void gradientOfCrossEntropyPlusKlMatchesCentralFiniteDifferences() {
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(4), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.SHARING), cfg(0.7))) {
            // move away from zero, where the KL and its gradient vanish
            for (int i = 0; i < 6; i++) {
                tr.step(IncrementalTrainerTest.batch(i));
            }
            TrainBatch b = withBaseRows(7);
            Map<String, float[]> grads = tr.objectiveGradients(b);
            // the KL part alone: the same adapter, the batch without base rows (CE only) subtracted
            TrainBatch noBase = new TrainBatch(b.tokens(), null, null, null);
            Map<String, float[]> ceGrads = tr.objectiveGradients(noBase);
            record Entry(String name, int idx, double g, double gKl) {}
            List<Entry> entries = new ArrayList<>();
            grads.forEach((name, g) -> {
                float[] c = ceGrads.get(name);
                for (int k = 0; k < g.length; k++) {
                    entries.add(new Entry(name, k, g[k], (g[k] - c[k]) / 0.7));
                }
            });
            Map<String, NDArray> params = tr.adapters().trainable();
            double eps = 3e-3;
            for (Entry e : entries.stream().sorted(Comparator.comparingDouble((Entry x) -> -Math.abs(x.gKl()))).limit(4).toList()) {
                NDArray p = params.get(e.name());
                float[] v = p.toFloatArray();
                double[] total = new double[2];
                double[] ce = new double[2];
                for (int s = 0; s < 2; s++) {
                    float[] w = v.clone();
                    w[e.idx()] += (float) (s == 0 ? eps : -eps);
                    Autograd.off();
                    p.set(FloatBuffer.wrap(w));
                    total[s] = tr.objectiveValue(b);
                    ce[s] = tr.objectiveValue(noBase);
                }
                Autograd.off();
                p.set(FloatBuffer.wrap(v));
                double fdTotal = (total[0] - total[1]) / (2 * eps);
                double fdKl = ((total[0] - ce[0]) - (total[1] - ce[1])) / (2 * eps * 0.7);
                assertTrue(Math.abs(fdTotal - e.g()) <= 2e-3 + 3e-2 * Math.abs(fdTotal),
                        e.name() + "[" + e.idx() + "]: analytic " + e.g() + " vs finite difference " + fdTotal);
                assertTrue(Math.abs(fdKl - e.gKl()) <= 2e-3 + 3e-2 * Math.abs(fdKl),
                        "KL part of " + e.name() + "[" + e.idx() + "]: analytic " + e.gKl() + " vs finite difference " + fdKl);
                assertTrue(Math.abs(e.gKl()) > 1e-3, "KL gradient too small to check: " + e);
            }
        }
    }

    @Test
    void theTermPullsBaseRowsBackToTheBase() {
        // same data, same seed; the control's weight is too small to matter but makes the trainer report the KL
        double[] kl = new double[2];
        for (int run = 0; run < 2; run++) {
            try (NDManager root = NDManager.newBaseManager();
                    LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(5), root);
                    IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.SHARING),
                            cfg(run == 0 ? 1e-9 : 5.0))) {
                for (int i = 0; i < 30; i++) {
                    double k = tr.step(withBaseRows(i % 3)).klToBase();
                    if (i >= 27) {
                        kl[run] += k / 3;
                    }
                }
            }
        }
        assertTrue(kl[1] < 0.5 * kl[0], "KL on base rows without the term " + kl[0] + ", with weight 5 " + kl[1]);
    }

    @Test
    void refusedWhereTheModelWithoutAdaptersIsNotTheBase() {
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(6), root)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new IncrementalTrainer(model, AdapterSpec.full(), cfg(0.5)).close());
            assertTrue(e.getMessage().contains("reference"), e.getMessage());
            assertThrows(IllegalArgumentException.class,
                    () -> new IncrementalTrainer(model, AdapterSpec.mora(4, MoraVariant.SHARING), cfg(0.5).withRemora(5, 1)).close());
        }
    }
}
