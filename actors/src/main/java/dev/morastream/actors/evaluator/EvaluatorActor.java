package dev.morastream.actors.evaluator;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.llama.Autograd;
import dev.morastream.actors.supervisor.Scores;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.eval.TextMetrics;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.eval.Perplexity;
import dev.morastream.models.train.Losses;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.pattern.StatusReply;

/**
 * Scores a candidate adapter and the one in service (or the base model) on the same sets:
 * memorisation (greedy character accuracy on trained prompt/completion facts, loss on trained
 * rows), downstream task sets (character accuracy per set) and retention (loss on the base model's
 * held-out text). Adapters are loaded detached ({@link AdapterFiles#loadDetached}) and applied
 * through their own {@link LinearOp}, so evaluation shares the base weights with training without
 * touching the adapter installed on the model. Spawn on {@link #DISPATCHER}: every evaluation
 * blocks for seconds.
 */
public final class EvaluatorActor extends AbstractBehavior<EvaluatorActor.Command> {
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.actors.blocking-dispatcher");

    /** What the evaluator understands. */
    public sealed interface Command {}

    /**
     * Scores {@code candidateDir} and {@code servingDir} (empty: the base model) on {@code sample}
     * and the configured sets.
     */
    public record Evaluate(Path candidateDir, Optional<Path> servingDir, Sample sample,
                           ActorRef<StatusReply<Evaluation>> replyTo) implements Command {}

    /** Both scores, measured on the same sets. */
    public record Evaluation(Scores candidate, Scores serving) {}

    /**
     * @param tasks downstream items (each scored in its own {@code set})
     * @param heldout retention text (the base model's held-out general set)
     * @param window tokens per retention window (at most the model's context)
     * @param maxNewTokens generation budget of a downstream item
     */
    public record Settings(List<TaskSet.Item> tasks, String heldout, int window, int maxNewTokens) {
        public Settings {
            tasks = List.copyOf(tasks);
        }
    }

    private final LlamaModel model;
    private final TextTokenizer tok;
    private final Settings settings;
    private final int[] heldoutIds;

    public static Behavior<Command> create(LlamaModel model, TextTokenizer tok, Settings settings) {
        return Behaviors.setup(ctx -> new EvaluatorActor(ctx, model, tok, settings));
    }

    private EvaluatorActor(ActorContext<Command> ctx, LlamaModel model, TextTokenizer tok, Settings settings) {
        super(ctx);
        this.model = model;
        this.tok = tok;
        this.settings = settings;
        this.heldoutIds = tok.encodeFramed(settings.heldout(), false);
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder().onMessage(Evaluate.class, this::onEvaluate).build();
    }

    private Behavior<Command> onEvaluate(Evaluate m) {
        Autograd.off(); // no graphs for evaluation forwards
        long t0 = System.nanoTime();
        try {
            Scores cand = scoreDir(Optional.of(m.candidateDir()), m.sample());
            Scores serving = scoreDir(m.servingDir(), m.sample());
            getContext().getLog().info("evaluator: {} in {} ms: candidate {} vs serving {}", m.candidateDir().getFileName(),
                    (System.nanoTime() - t0) / 1_000_000, cand, serving);
            m.replyTo().tell(StatusReply.success(new Evaluation(cand, serving)));
        } catch (RuntimeException e) {
            getContext().getLog().warn("evaluator: {} failed: {}", m.candidateDir(), e.toString());
            m.replyTo().tell(StatusReply.error("evaluation of " + m.candidateDir() + " failed: " + e));
        }
        return this;
    }

    private Scores scoreDir(Optional<Path> dir, Sample sample) {
        if (dir.isEmpty()) {
            return score(LinearOp.PLAIN, sample);
        }
        try (AdapterSet set = AdapterFiles.loadDetached(dir.get(), model)) {
            return score(set.op(), sample).withProgressiveLoss(progressiveLoss(dir.get()));
        }
    }

    /**
     * The trainer's progressive loss of a registry version (its {@code version.json} info
     * {@code progressive_loss}: mean before-update loss of the batches it was trained on since the
     * previous checkpoint); NaN when the directory has none (an adapter made elsewhere).
     */
    static double progressiveLoss(Path versionDir) {
        Path f = versionDir.resolve("version.json");
        if (!java.nio.file.Files.isRegularFile(f)) {
            return Double.NaN;
        }
        try {
            com.fasterxml.jackson.databind.JsonNode v = new com.fasterxml.jackson.databind.ObjectMapper().readTree(f.toFile())
                    .path("info").path("progressive_loss");
            return v.isMissingNode() ? Double.NaN : Double.parseDouble(v.asText());
        } catch (java.io.IOException | NumberFormatException e) {
            return Double.NaN;
        }
    }

    /** Every score of one adapter ({@code op}) on the sample and the configured sets. */
    public Scores score(LinearOp op, Sample sample) {
        Generator gen = new Generator(model, tok, op);
        double charAcc = Double.NaN;
        double exact = Double.NaN;
        if (!sample.facts().isEmpty()) {
            double sum = 0;
            int hits = 0;
            for (Sample.Fact f : sample.facts()) {
                int budget = tok.encode(f.completion()).length + 2;
                String got = gen.generate(f.prompt(), GenerationConfig.greedy(budget), null).text();
                sum += TextMetrics.charAccuracy(got, f.completion());
                hits += TextMetrics.exactMatch(got, f.completion()) ? 1 : 0;
            }
            charAcc = sum / sample.facts().size();
            exact = (double) hits / sample.facts().size();
        }
        double memLoss = sample.texts().isEmpty() ? Double.NaN : rowsLoss(op, sample.texts());
        Map<String, Double> downstream = new LinkedHashMap<>();
        if (!settings.tasks().isEmpty()) {
            for (TaskSet.Score s : TaskSet.evaluate(gen, settings.tasks(), settings.maxNewTokens())) {
                if (!s.set().equals("all")) {
                    downstream.put(s.set(), s.charAccuracy());
                }
            }
        }
        return new Scores(charAcc, memLoss, downstream, retentionLoss(op), exact, Double.NaN);
    }

    /** Mean next-token loss of whole rows {@code (T + 1)} through {@code op}. */
    double rowsLoss(LinearOp op, List<int[]> rows) {
        double nll = 0;
        long count = 0;
        try (NDManager root = NDManager.newBaseManager(model.device())) {
            for (int[] row : rows) {
                try (NDManager m = root.newSubManager()) {
                    int[][] x = {Arrays.copyOf(row, row.length - 1)};
                    int[][] y = {Arrays.copyOfRange(row, 1, row.length)};
                    NDArray logits = model.forward(model.ids(m, x), null, op); // (1, T, V)
                    nll += Losses.nllSum(logits, model.ids(m, y), null).getFloat();
                    count += row.length - 1;
                }
            }
        }
        return nll / count;
    }

    /** Mean loss on the held-out text in consecutive windows, through {@code op}. */
    double retentionLoss(LinearOp op) {
        return heldoutIds.length < 2 ? Double.NaN : Perplexity.evaluate(model, heldoutIds, settings.window(), op).loss();
    }
}
