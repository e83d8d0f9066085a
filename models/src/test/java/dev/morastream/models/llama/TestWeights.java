package dev.morastream.models.llama;

import dev.morastream.models.checkpoint.Tensor;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/** Random weights for every tensor a config needs (tests only). */
public final class TestWeights {
    private TestWeights() {}

    /**
     * @param std standard deviation of every matrix entry
     * @param normStd spread of the norm weights around 1 (0: all ones)
     */
    public static Map<String, Tensor> random(LlamaConfig c, long seed, double std, double normStd) {
        Random r = new Random(seed);
        Map<String, Tensor> m = new LinkedHashMap<>();
        LlamaModel.expectedWeights(c).forEach((name, shape) -> {
            float[] d = new float[(int) Tensor.numel(shape)];
            boolean norm = name.endsWith("norm.weight");
            for (int i = 0; i < d.length; i++) {
                d[i] = norm ? (float) (1 + normStd * r.nextGaussian()) : (float) (std * r.nextGaussian());
            }
            m.put(name, new Tensor(name, shape, d));
        });
        return m;
    }
}
