package dev.morastream.actors.evaluator;

import dev.morastream.models.llama.Autograd;
import dev.morastream.actors.supervisor.Scores;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.nio.file.Path;
import java.util.List;
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
 * Scores a candidate adapter, the one in service and the base model on the same sets with a {@link
 * Scorer}: memorisation (greedy character accuracy on trained prompt/completion facts, loss on
 * trained rows), downstream task sets (character accuracy per set), retention (loss on the base
 * model's held-out text) and the KL from the base on a fixed prompt set. What does not depend on
 * the candidate's sample (downstream, retention, KL) is computed once for the base and once per
 * version in service, so an evaluation costs one full scoring of the candidate plus the sample's
 * facts for the others. Adapters are loaded detached ({@link AdapterFiles#loadDetached}) and
 * applied through their own {@link LinearOp}, so evaluation shares the base weights with training
 * without touching the adapter installed on the model. Spawn on {@link #DISPATCHER}: every
 * evaluation blocks for seconds.
 */
public final class EvaluatorActor extends AbstractBehavior<EvaluatorActor.Command> {
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.actors.blocking-dispatcher");

    /** What the evaluator understands. */
    public sealed interface Command {}

    /**
     * Scores {@code candidateDir}, {@code servingDir} (empty: the base model) and the base on
     * {@code sample} and the configured sets.
     */
    public record Evaluate(Path candidateDir, Optional<Path> servingDir, Sample sample,
                           ActorRef<StatusReply<Evaluation>> replyTo) implements Command {}

    /** The three scores, measured on the same sets. */
    public record Evaluation(Scores candidate, Scores serving, Scores base) {
        /** When the base is the reference in service. */
        public Evaluation(Scores candidate, Scores serving) {
            this(candidate, serving, serving);
        }
    }

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
    private final Scorer scorer;
    private Scorer.Fixed baseFixed; // the base's downstream, retention, KL (0): computed once
    private Path servingDir; // the version in service whose fixed scores are kept
    private Scorer.Fixed servingFixed;

    public static Behavior<Command> create(LlamaModel model, TextTokenizer tok, Settings settings) {
        return Behaviors.setup(ctx -> new EvaluatorActor(ctx, model, tok, settings));
    }

    private EvaluatorActor(ActorContext<Command> ctx, LlamaModel model, TextTokenizer tok, Settings settings) {
        super(ctx);
        this.model = model;
        this.scorer = new Scorer(model, tok, settings);
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder().onMessage(Evaluate.class, this::onEvaluate).build();
    }

    private Behavior<Command> onEvaluate(Evaluate m) {
        Autograd.off(); // no graphs for evaluation forwards
        long t0 = System.nanoTime();
        try {
            if (baseFixed == null) {
                baseFixed = scorer.fixed(LinearOp.PLAIN);
            }
            Scores base = scorer.score(LinearOp.PLAIN, m.sample(), baseFixed);
            Scores cand = scoreDir(m.candidateDir(), m.sample(), false);
            Scores serving = m.servingDir().isEmpty() ? base : scoreDir(m.servingDir().get(), m.sample(), true);
            getContext().getLog().info("evaluator: {} in {} ms: candidate {} vs serving {} vs base {}", m.candidateDir().getFileName(),
                    (System.nanoTime() - t0) / 1_000_000, cand, serving, base);
            m.replyTo().tell(StatusReply.success(new Evaluation(cand, serving, base)));
        } catch (RuntimeException e) {
            getContext().getLog().warn("evaluator: {} failed: {}", m.candidateDir(), e.toString());
            m.replyTo().tell(StatusReply.error("evaluation of " + m.candidateDir() + " failed: " + e));
        }
        return this;
    }

    /** A registry version's scores; a version in service keeps its fixed scores until another is. */
    private Scores scoreDir(Path dir, Sample sample, boolean inService) {
        try (AdapterSet set = AdapterFiles.loadDetached(dir, model)) {
            if (!inService) {
                return scorer.score(set.op(), sample);
            }
            if (!dir.equals(servingDir)) {
                servingFixed = scorer.fixed(set.op());
                servingDir = dir;
            }
            return scorer.score(set.op(), sample, servingFixed);
        }
    }
}
