package dev.morastream.models.eval;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.Losses;
import java.util.Arrays;
import java.util.List;

/**
 * Mean next-token cross-entropy (nats) and perplexity of a model on text.
 *
 * <p>The token sequence {@code x_0 .. x_{n-1}} is cut into consecutive, non-overlapping windows of
 * at most {@code window} predictions: window {@code i} feeds {@code x[s, s+w)} and predicts {@code
 * x[s+1, s+w+1)}, the next starts at {@code s+w}. Every token after the first is predicted exactly
 * once, from the tokens of its own window before it (no context carries over between windows). Each
 * window runs in its own sub-manager.
 */
public final class Perplexity {
    private Perplexity() {}

    /**
     * @param tokens number of predictions (tokens scored)
     * @param loss mean negative log-likelihood per prediction, in nats
     * @param perplexity {@code exp(loss)}
     */
    public record Result(long tokens, double loss, double perplexity) {}

    /** Scores {@code text} with BOS (when the tokenizer has one) in front, on the base model. */
    public static Result evaluate(LlamaModel model, TextTokenizer tok, String text, int window) {
        return evaluate(model, tok, text, window, LinearOp.PLAIN);
    }

    /** Scores {@code text} with BOS (when the tokenizer has one) in front, through {@code op}. */
    public static Result evaluate(LlamaModel model, TextTokenizer tok, String text, int window, LinearOp op) {
        return evaluate(model, tok.encodeFramed(text, false), window, op);
    }

    /** Scores pre-tokenized ids as they are (nothing is added), on the base model. */
    public static Result evaluate(LlamaModel model, int[] tokens, int window) {
        return evaluate(model, tokens, window, LinearOp.PLAIN);
    }

    /**
     * Scores pre-tokenized ids through an explicit {@link LinearOp} (an adapter version's, or
     * {@link LinearOp#PLAIN} for the base), whatever is installed on the shared model.
     */
    public static Result evaluate(LlamaModel model, int[] tokens, int window, LinearOp op) {
        Sum sum = new Sum();
        accumulate(model, tokens, window, sum, op);
        return sum.result();
    }

    /** Pooled mean over many texts, each tokenized on its own with its own BOS, on the base model. */
    public static Result evaluate(LlamaModel model, TextTokenizer tok, List<String> texts, int window) {
        return evaluate(model, tok, texts, window, LinearOp.PLAIN);
    }

    /** Pooled mean over many texts, each tokenized on its own with its own BOS, through {@code op}. */
    public static Result evaluate(LlamaModel model, TextTokenizer tok, List<String> texts, int window, LinearOp op) {
        Sum sum = new Sum();
        for (String text : texts) {
            accumulate(model, tok.encodeFramed(text, false), window, sum, op);
        }
        return sum.result();
    }

    private static void accumulate(LlamaModel model, int[] tokens, int window, Sum sum, LinearOp op) {
        int context = model.config().maxPositionEmbeddings();
        if (window < 1 || window > context) {
            throw new IllegalArgumentException("window must be in [1, " + context + "] (the context), got " + window);
        }
        Autograd.off();
        try (NDManager root = NDManager.newBaseManager(model.device())) {
            // full windows go through the model in batches of up to BATCH rows; the last, shorter one alone
            java.util.List<int[]> batch = new java.util.ArrayList<>();
            for (int s = 0; s + 1 < tokens.length; ) {
                int w = Math.min(window, tokens.length - 1 - s);
                batch.add(Arrays.copyOfRange(tokens, s, s + w + 1));
                s += w;
                boolean last = s + 1 >= tokens.length;
                if (batch.size() == BATCH || last || (tokens.length - 1 - s) < window) {
                    score(model, root, batch, sum, op);
                    batch.clear();
                }
            }
        }
    }

    private static final int BATCH = 8;

    /** Scores equally long windows (each {@code w + 1} tokens) as one batch. */
    private static void score(LlamaModel model, NDManager root, java.util.List<int[]> windows, Sum sum, LinearOp op) {
        if (windows.isEmpty()) {
            return;
        }
        int w = windows.get(0).length - 1;
        int[][] in = new int[windows.size()][];
        int[][] out = new int[windows.size()][];
        for (int i = 0; i < in.length; i++) {
            in[i] = Arrays.copyOf(windows.get(i), w);
            out[i] = Arrays.copyOfRange(windows.get(i), 1, w + 1);
        }
        try (NDManager m = root.newSubManager()) {
            NDArray logits = model.forward(model.ids(m, in), null, op); // (B, w, V)
            sum.add(Losses.nllSum(logits, model.ids(m, out), null).getFloat(), (long) w * in.length);
        }
    }

    /** Running sum of losses and count of predictions. */
    private static final class Sum {
        private double nll;
        private long count;

        void add(double windowNll, long predictions) {
            nll += windowNll;
            count += predictions;
        }

        Result result() {
            if (count == 0) {
                throw new IllegalArgumentException("nothing to score: perplexity needs at least two tokens");
            }
            double loss = nll / count;
            return new Result(count, loss, Math.exp(loss));
        }
    }
}
