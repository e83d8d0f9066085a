package dev.morastream.models.generate;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.checkpoint.Tensor;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/** Models and tokenizers for generation and evaluation tests. */
public final class TestModels {
    private TestModels() {}

    /**
     * A random {@link LlamaConfig#micro} model over the byte vocabulary (259 ids) whose matrices
     * have std 0.3 rather than 0.02, so that its next-token distributions are far from uniform
     * (logits spread by about 1.7) yet not one-hot.
     */
    public static LlamaModel peaked(long seed, NDManager parent) {
        LlamaConfig c = LlamaConfig.micro(259);
        Random r = new Random(seed);
        Map<String, Tensor> m = new LinkedHashMap<>();
        LlamaModel.expectedWeights(c).forEach((name, shape) -> {
            float[] d = new float[(int) Tensor.numel(shape)];
            for (int i = 0; i < d.length; i++) {
                d[i] = name.endsWith("norm.weight") ? 1f : 0.3f * (float) r.nextGaussian();
            }
            m.put(name, new Tensor(name, shape, d));
        });
        return LlamaModel.fromTensors(c, m, parent);
    }

    /**
     * One char per token, so that text positions are token positions: ids 0..255 decode to a
     * small alphabet (so that substrings repeat), BOS 256, PAD 258, and a chosen set of EOS ids,
     * which decoding skips like every special token.
     */
    public static final class Letters implements TextTokenizer {
        public static final String ALPHABET = "abcdefgh ";
        private final Set<Integer> eos;

        public Letters(Set<Integer> eos) {
            this.eos = Set.copyOf(eos);
        }

        @Override
        public int[] encode(String text) {
            int[] ids = new int[text.length()];
            for (int i = 0; i < ids.length; i++) {
                int k = ALPHABET.indexOf(text.charAt(i));
                if (k < 0) {
                    throw new IllegalArgumentException("not in the alphabet: " + text.charAt(i));
                }
                ids[i] = k;
            }
            return ids;
        }

        @Override
        public String decode(int[] ids) {
            StringBuilder b = new StringBuilder();
            for (int id : ids) {
                if (id >= 0 && id < 256 && !eos.contains(id)) {
                    b.append(ALPHABET.charAt(id % ALPHABET.length()));
                }
            }
            return b.toString();
        }

        @Override
        public int vocabSize() {
            return 259;
        }

        @Override
        public int bos() {
            return 256;
        }

        @Override
        public Set<Integer> eos() {
            return eos;
        }

        @Override
        public int pad() {
            return 258;
        }

        @Override
        public String name() {
            return "letters";
        }
    }
}
