package dev.morastream.models.llama;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.checkpoint.Tensor;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class LlamaForwardTest {

    /** Random weights with non-trivial norms, so that every weight matters. */
    static Map<String, Tensor> randomTensors(LlamaConfig c, long seed) {
        return TestWeights.random(c, seed, 0.3, 0.3);
    }

    private static void check(LlamaConfig c) {
        Map<String, Tensor> w = randomTensors(c, 7);
        int[] ids = {3, 17, 0, 22, 5, 5, 11, c.vocabSize() - 1, 8, 1};
        float[][] want = new NaiveLlama(c, w).forward(ids);
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(c, w, root);
                NDManager step = root.newSubManager()) {
            NDArray logits = model.forward(model.ids(step, new int[][] {ids}), null, dev.morastream.models.llama.LinearOp.PLAIN); // (1, T, V)
            assertEquals(List.of(1L, (long) ids.length, (long) c.vocabSize()),
                    List.of(logits.getShape().get(0), logits.getShape().get(1), logits.getShape().get(2)));
            float[] got = logits.toFloatArray();
            double maxErr = 0;
            for (int i = 0; i < ids.length; i++) {
                for (int v = 0; v < c.vocabSize(); v++) {
                    maxErr = Math.max(maxErr, Math.abs(got[i * c.vocabSize() + v] - want[i][v]));
                }
            }
            assertTrue(maxErr < 1e-4, "max |djl - naive| = " + maxErr);
        }
    }

    @Test
    void tiedEmbeddingsWithGqaMatchNaiveReference() {
        LlamaConfig c = LlamaConfig.micro(37);
        assertTrue(c.numKeyValueHeads() < c.numAttentionHeads());
        assertTrue(c.tieWordEmbeddings());
        check(c);
    }

    @Test
    void untiedHeadWithoutGqaAndRopeScalingMatchesNaiveReference() {
        LlamaConfig c = new LlamaConfig(24, 40, 3, 3, 3, 8, 29, 64, 1e-6, 500000.0,
                new LlamaConfig.RopeScaling("llama3", 8, 1, 4, 16), false, false, false, -1, List.of());
        check(c);
    }
}
