package dev.morastream.models.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.generate.TestModels;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class PerplexityTest {
    private static final String TEXT = "Perplexity, computed by hand.";
    private static NDManager root;
    private static LlamaModel model;
    private static final ByteTokenizer TOK = new ByteTokenizer();

    @BeforeAll
    static void setUp() {
        root = NDManager.newBaseManager();
        model = TestModels.peaked(3, root);
        model.manager().cap(); // temporaries must never land in the weights' manager
    }

    @AfterAll
    static void tearDown() {
        model.close();
        root.close();
    }

    private static int[] withBos(String text) {
        int[] ids = TOK.encode(text);
        int[] out = new int[ids.length + 1];
        out[0] = ByteTokenizer.BOS;
        System.arraycopy(ids, 0, out, 1, ids.length);
        return out;
    }

    /** Summed NLL of predicting {@code tokens[from+1 .. to]} from {@code tokens[from .. to-1]}, one forward, in Java. */
    private static double nllByHand(int[] tokens, int from, int to) {
        try (NDManager m = NDManager.newBaseManager()) {
            int[] in = Arrays.copyOfRange(tokens, from, to);
            NDArray logits = model.forward(model.ids(m, new int[][] {in}), null, dev.morastream.models.llama.LinearOp.PLAIN); // (1, T, V)
            float[] flat = logits.toFloatArray();
            int v = model.config().vocabSize();
            double sum = 0;
            for (int t = 0; t < in.length; t++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int k = 0; k < v; k++) {
                    max = Math.max(max, flat[t * v + k]);
                }
                double z = 0;
                for (int k = 0; k < v; k++) {
                    z += Math.exp(flat[t * v + k] - max);
                }
                sum -= flat[t * v + tokens[from + t + 1]] - max - Math.log(z);
            }
            return sum;
        }
    }

    @Test
    void oneWindowEqualsTheLossByHand() {
        int[] tokens = withBos(TEXT);
        double want = nllByHand(tokens, 0, tokens.length - 1) / (tokens.length - 1);
        Perplexity.Result r = Perplexity.evaluate(model, TOK, TEXT, model.config().maxPositionEmbeddings());
        assertEquals(TEXT.length(), r.tokens()); // BOS + n bytes: n predictions
        assertEquals(want, r.loss(), 1e-5);
        assertEquals(Math.exp(r.loss()), r.perplexity(), 1e-9);
        assertEquals(r, Perplexity.evaluate(model, tokens, model.config().maxPositionEmbeddings()));
    }

    @Test
    void smallerWindowsEqualTheLossOfEachWindowByHand() {
        int[] tokens = withBos(TEXT); // 30 tokens, 29 predictions: windows of 8, 8, 8, 5
        int window = 8;
        double sum = 0;
        for (int s = 0; s + 1 < tokens.length; s += window) {
            sum += nllByHand(tokens, s, Math.min(s + window, tokens.length - 1));
        }
        Perplexity.Result r = Perplexity.evaluate(model, TOK, TEXT, window);
        assertEquals(tokens.length - 1, r.tokens());
        assertEquals(sum / (tokens.length - 1), r.loss(), 1e-5);
        // less context per prediction: a different value than the single window
        assertNotEquals(Perplexity.evaluate(model, TOK, TEXT, 64).loss(), r.loss(), 1e-4);
    }

    @Test
    void textLongerThanTheContextIsScoredInWindows() {
        String text = "x".repeat(150);
        Perplexity.Result r = Perplexity.evaluate(model, TOK, text, model.config().maxPositionEmbeddings());
        assertEquals(150, r.tokens());
        assertEquals(1, Perplexity.evaluate(model, TOK, "x", 4).tokens());
    }

    @Test
    void manyTextsPoolTheirPredictions() {
        String a = "first text";
        String b = "and a second, longer one";
        Perplexity.Result ra = Perplexity.evaluate(model, TOK, a, 16);
        Perplexity.Result rb = Perplexity.evaluate(model, TOK, b, 16);
        Perplexity.Result pooled = Perplexity.evaluate(model, TOK, List.of(a, b), 16);
        assertEquals(ra.tokens() + rb.tokens(), pooled.tokens());
        assertEquals((ra.loss() * ra.tokens() + rb.loss() * rb.tokens()) / pooled.tokens(), pooled.loss(), 1e-9);
    }

    @Test
    void badArgumentsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> Perplexity.evaluate(model, TOK, TEXT, 0));
        assertThrows(IllegalArgumentException.class, () -> Perplexity.evaluate(model, TOK, TEXT, 65));
        assertThrows(IllegalArgumentException.class, () -> Perplexity.evaluate(model, TOK, "", 8)); // BOS only
    }
}
