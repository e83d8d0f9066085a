package dev.morastream.models.train;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.corpus.SyntheticCorpus;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * The MoRA paper's pretraining comparison (its Table 3) at small scale: from a random
 * initialisation, LoRA, MoRA, ReLoRA, ReMoRA or full training on the synthetic corpus, fresh
 * documents every batch (nothing repeats, so held-out loss measures learning, not memorising),
 * scored on held-out documents drawn with another seed.
 */
public final class PretrainBench {
    /** The methods compared. */
    public enum Method {
        LORA, MORA, RELORA, REMORA, FULL;

        public static Method parse(String s) {
            try {
                return valueOf(s.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("unknown method '" + s + "' (lora, mora, relora, remora, full)");
            }
        }

        public String id() {
            return name().toLowerCase(Locale.ROOT);
        }

        boolean restarts() {
            return this == RELORA || this == REMORA;
        }
    }

    /**
     * @param restartEvery optimizer steps between ReLoRA/ReMoRA merges (ignored by the others)
     * @param variant MoRA variant ({@code null}: sharing, as the paper's ReMoRA cycle starts there)
     */
    public record Settings(Method method, MoraVariant variant, int rank, int steps, int restartEvery, double lr, int batchSize,
                           int seqLen, int evalEvery, int heldoutRows, long seed, String config) {}

    /** One evaluation. */
    public record Point(String method, String variant, int rank, long trainableParams, long step, double trainLoss,
                        double heldoutLoss, double heldoutPpl) {}

    private PretrainBench() {}

    /** The model shapes: {@code tiny} is the shipped base's (3 M), {@code small} about 4x wider in compute. */
    public static LlamaConfig config(String name) {
        return switch (name) {
            case "tiny" -> LlamaConfig.tiny();
            case "small" -> new LlamaConfig(384, 1024, 6, 6, 2, 64, 259, 256, 1e-5, 10000.0, null, true, false, false, 256,
                    List.of(257));
            default -> throw new IllegalArgumentException("unknown --config '" + name + "' (tiny, small)");
        };
    }

    /** Default peak learning rate of a method (the paper's sweeps put low-rank methods above full). */
    public static double defaultLr(Method m) {
        return m == Method.FULL ? 1e-3 : 3e-3;
    }

    public static void run(Settings s, Consumer<Point> sink) {
        LlamaConfig cfg = config(s.config());
        AdapterSpec spec = switch (s.method()) {
            case LORA, RELORA -> AdapterSpec.lora(s.rank(), 2.0 * s.rank());
            case MORA, REMORA -> AdapterSpec.mora(s.rank(), s.variant() != null ? s.variant()
                    : s.method() == Method.REMORA ? MoraVariant.SHARING : null);
            case FULL -> AdapterSpec.full();
        };
        int warmup = Math.max(1, Math.min(50, s.steps() / 10));
        TrainerConfig tc = new TrainerConfig(s.lr(), LrSchedule.Kind.COSINE, warmup, s.steps(), 0.1, 0.0, 1.0, 1, false, false,
                s.method().restarts() ? s.restartEvery() : 0, Math.max(1, Math.min(20, s.restartEvery() / 5)));
        ByteTokenizer tok = new ByteTokenizer();
        SyntheticCorpus corpus = new SyntheticCorpus(SyntheticWorld.base());
        int len = Math.min(s.seqLen(), cfg.maxPositionEmbeddings());
        Pretrainer.TokenStream data = new Pretrainer.TokenStream(corpus, tok, s.seed());
        TrainBatch heldout = TrainBatch.of(new Pretrainer.TokenStream(corpus, tok, s.seed() ^ 0x5EEDF00DL).windows(s.heldoutRows(), len));
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.random(cfg, s.seed(), root);
                IncrementalTrainer tr = new IncrementalTrainer(model, spec, tc)) {
            String variant = spec.method() == AdapterSpec.Method.MORA ? spec.resolvedVariant().id() : "";
            long params = tr.adapters().trainableParameters();
            double sum = 0;
            int n = 0;
            sink.accept(point(s, variant, params, 0, Double.NaN, tr.evaluate(heldout)));
            while (tr.step() < s.steps()) {
                StepResult r = tr.step(TrainBatch.of(data.windows(s.batchSize(), len)));
                sum += r.lossBefore();
                n++;
                if (r.updated() && (tr.step() % s.evalEvery() == 0 || tr.step() == s.steps())) {
                    sink.accept(point(s, variant, params, tr.step(), sum / n, tr.evaluate(heldout)));
                    sum = 0;
                    n = 0;
                }
            }
        }
    }

    private static Point point(Settings s, String variant, long params, long step, double train, double held) {
        return new Point(s.method().id(), variant, s.rank(), params, step, train, held, Math.exp(held));
    }
}
