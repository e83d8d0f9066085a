package dev.morastream.actors.trainer;

import dev.morastream.models.llama.Autograd;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.StepResult;
import dev.morastream.models.train.TrainerCheckpoint;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.streams.BatchSink;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.PreRestart;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.pattern.StatusReply;

/**
 * Trains one domain's adapter on the shared frozen base model, one packed batch at a time.
 *
 * <ul>
 *   <li>The stream reaches it through {@link #sink}: an ask per batch, so the next batch is sent only
 *       when this one is trained (backpressure, one batch in flight).
 *   <li>Checkpoints every {@link Settings#everySteps} optimizer steps or {@link Settings#every}
 *       (whichever first), with the stream's resume points in the metadata; then publishes the
 *       adapter to the registry and tells the supervisor {@code CandidateReady}.
 *   <li>An exception, a non-finite loss or a loss above {@code divergenceFactor} x its running mean
 *       fails the batch's ask and throws {@link TrainingFailure}; the supervision set up by
 *       {@link #create} restarts the actor from its last checkpoint. After every
 *       {@code lrBackoffAfter} divergences the learning rate is multiplied by {@code lrBackoff}.
 *       The steps since that checkpoint are lost: the stream must be restarted from the
 *       checkpoint's resume points ({@link #resumePoints}) to retrain them.
 * </ul>
 *
 * Spawn on {@link #DISPATCHER}: a thread of its own per trainer, so that the trainers of several
 * domains step concurrently on the shared frozen model, each with its own adapter.
 */
public final class TrainerActor extends AbstractBehavior<TrainerActor.Command> {
    /** A thread of its own for each trainer's steps and checkpoints (see reference.conf). */
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.actors.trainer-dispatcher");

    /** What a trainer understands. */
    public sealed interface Command {}

    /** Trains one batch; the reply says what the step did and which offsets are now durable. */
    public record Train(PackedBatch batch, ActorRef<StatusReply<Trained>> replyTo) implements Command {}

    /** Writes a checkpoint now when anything was trained since the last (also used on shutdown). */
    public record CheckpointNow(ActorRef<StatusReply<Optional<Path>>> replyTo) implements Command {}

    /**
     * Checkpoints now when anything was trained since the last, and replies with the offsets the
     * latest checkpoint holds (what {@link BatchSink#flush} reports for this domain). In the middle
     * of a gradient accumulation nothing can be saved: the reply is the last checkpoint's offsets.
     */
    public record Flush(ActorRef<StatusReply<Flushed>> replyTo) implements Command {}

    /** Reply to {@link Flush}: the trainer's domain and the offsets its latest checkpoint holds. */
    public record Flushed(String domain, Map<TopicPartition, Long> offsets) {
        public Flushed {
            offsets = Map.copyOf(offsets);
        }
    }

    /** Stops after a final checkpoint; replies when done. */
    public record Stop(ActorRef<StatusReply<Optional<Path>>> replyTo) implements Command {}

    private record Tick() implements Command {}

    private record Published(StatusReply<AdapterRegistry.Entry> reply, long step, double progressiveLoss) implements Command {}

    /**
     * Reply to {@link Train}.
     *
     * @param step what the step did
     * @param durableOffsets offsets to commit: those of the checkpoint written since the last reply, or empty
     * @param checkpoint the checkpoint written by this batch, if any
     */
    public record Trained(StepResult step, Map<TopicPartition, Long> durableOffsets, Optional<Path> checkpoint) {
        public Trained {
            durableOffsets = Map.copyOf(durableOffsets);
        }
    }

    /** Why a trainer gave up on its state: supervision restarts it from the last checkpoint. */
    public static final class TrainingFailure extends RuntimeException {
        private final boolean divergence;

        public TrainingFailure(String message, boolean divergence, Throwable cause) {
            super(message, cause);
            this.divergence = divergence;
        }

        /** Whether the loss diverged (the learning rate backs off after repeated ones). */
        public boolean divergence() {
            return divergence;
        }
    }

    /**
     * @param domain the domain trained
     * @param spec adapter to train (a new one when no checkpoint exists)
     * @param config trainer settings; its learning rate is the starting one
     * @param checkpointRoot where this domain's checkpoints live
     * @param everySteps checkpoint after this many optimizer steps (at least 1)
     * @param every and when this much time passed with unsaved steps ({@code null}: only by steps)
     * @param keep checkpoints kept on disk (at least 2, so the one being published survives the next)
     * @param divergenceFactor a loss above this times its running mean is a divergence (e.g. 4)
     * @param divergenceWarmup steps before divergence is judged (the running mean settles)
     * @param lrBackoffAfter divergences before the learning rate backs off (and again after as many more)
     * @param lrBackoff factor of each back-off (e.g. 0.5)
     * @param sampleFacts prompt/completion facts kept for the evaluator
     * @param sampleTexts trained rows kept for the evaluator
     * @param ledger keep {@code checkpointRoot/ledger.txt}: the ids of the records whose training is in the
     *     latest checkpoint, one per line (appended and fsynced before each checkpoint, cut back to the
     *     checkpoint's length on start, so it never names a record the checkpoint did not absorb)
     */
    public record Settings(String domain, AdapterSpec spec, TrainerConfig config, Path checkpointRoot, int everySteps,
                           Duration every, int keep, double divergenceFactor, int divergenceWarmup, int lrBackoffAfter,
                           double lrBackoff, int sampleFacts, int sampleTexts, boolean ledger) {
        public Settings {
            if (everySteps < 1 || keep < 2 || divergenceFactor <= 1 || lrBackoffAfter < 1 || lrBackoff <= 0 || lrBackoff > 1) {
                throw new IllegalArgumentException("bad trainer settings: everySteps >= 1, keep >= 2, divergenceFactor > 1,"
                        + " lrBackoffAfter >= 1, 0 < lrBackoff <= 1");
            }
        }

        /** Defaults: checkpoint every 50 steps or 60 s, keep 3, divergence at 4x the mean after 20 steps, halve lr every 2. */
        public static Settings of(String domain, AdapterSpec spec, TrainerConfig config, Path checkpointRoot) {
            return new Settings(domain, spec, config, checkpointRoot, 50, Duration.ofSeconds(60), 3, 4.0, 20, 2, 0.5, 64, 64, false);
        }

        public Settings withCheckpointEvery(int steps, Duration time) {
            return new Settings(domain, spec, config, checkpointRoot, steps, time, keep, divergenceFactor, divergenceWarmup,
                    lrBackoffAfter, lrBackoff, sampleFacts, sampleTexts, ledger);
        }

        public Settings withDivergence(double factor, int warmup, int backoffAfter, double backoff) {
            return new Settings(domain, spec, config, checkpointRoot, everySteps, every, keep, factor, warmup, backoffAfter,
                    backoff, sampleFacts, sampleTexts, ledger);
        }

        public Settings withKeep(int n) {
            return new Settings(domain, spec, config, checkpointRoot, everySteps, every, n, divergenceFactor, divergenceWarmup,
                    lrBackoffAfter, lrBackoff, sampleFacts, sampleTexts, ledger);
        }

        public Settings withSamples(int facts, int texts) {
            return new Settings(domain, spec, config, checkpointRoot, everySteps, every, keep, divergenceFactor, divergenceWarmup,
                    lrBackoffAfter, lrBackoff, facts, texts, ledger);
        }

        public Settings withLedger(boolean on) {
            return new Settings(domain, spec, config, checkpointRoot, everySteps, every, keep, divergenceFactor, divergenceWarmup,
                    lrBackoffAfter, lrBackoff, sampleFacts, sampleTexts, on);
        }

        /** The ledger file (see {@code ledger}). */
        public Path ledgerFile() {
            return checkpointRoot.resolve(LEDGER_FILE);
        }
    }

    /** Failures seen across restarts of one trainer (lives outside the restarted behaviour). */
    static final class Health {
        int divergences;
        int failures;
        // a failure outside a Train (a timed checkpoint): the next Train is refused so that the stream
        // restarts from the checkpoint this trainer restarted from (nothing trained since is lost)
        String pendingRestart;
    }

    static final String LR_SCALE_KEY = "trainer.lr_scale";
    static final String LEDGER_KEY = "trainer.ledger_bytes";
    static final String LEDGER_FILE = "ledger.txt";
    static final String DOMAIN_KEY = "trainer.domain";

    private final Settings s;
    private final LlamaModel model;
    private final CheckpointReplica replica; // null: the local disk is all there is
    private final TextTokenizer tok;
    private final ActorRef<AdapterRegistryActor.Command> registry;
    private final ActorRef<PromotionSupervisor.Command> supervisor;
    private final Health health;
    private final TimerScheduler<Command> timers;
    private final IncrementalTrainer trainer;
    private final double lrScale;
    private final Reservoir reservoir;
    private final Map<TopicPartition, ResumePoint> resume = new HashMap<>();
    private Map<TopicPartition, Long> undelivered = Map.of(); // durable offsets not yet reported to the stream
    private Map<TopicPartition, Long> savedOffsets = Map.of(); // the offsets of the latest checkpoint
    private long savedStep;
    private double runningLoss = Double.NaN;
    private long judged;
    private double progressiveSum;
    private long progressiveCount;
    private final List<String> unledgered = new ArrayList<>(); // ids trained since the last checkpoint

    /**
     * The trainer, supervised: restarted from its last checkpoint on any failure (at most 10 times a
     * minute, then it stops).
     */
    public static Behavior<Command> create(Settings s, LlamaModel model, TextTokenizer tok,
                                           ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<PromotionSupervisor.Command> supervisor) {
        return create(s, model, tok, registry, supervisor, null);
    }

    /** As above, and each checkpoint is exported to {@code replica} too (the cluster's state store; {@code null}: none). */
    public static Behavior<Command> create(Settings s, LlamaModel model, TextTokenizer tok,
                                           ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<PromotionSupervisor.Command> supervisor, CheckpointReplica replica) {
        return Behaviors.setup(outer -> {
            Health health = new Health();
            Behavior<Command> inner = Behaviors.setup(ctx -> Behaviors.withTimers(
                    timers -> new TrainerActor(ctx, timers, s, model, tok, registry, supervisor, health, replica)));
            return Behaviors.supervise(inner).onFailure(Exception.class,
                    SupervisorStrategy.restart().withLimit(10, Duration.ofMinutes(1)).withLoggingEnabled(false));
        });
    }

    /**
     * The stream's view of a trainer: one ask per batch, answered with the durable offsets; a flush
     * (partitions moving to another consumer) is a checkpoint now.
     */
    public static BatchSink sink(ActorRef<Command> trainer, Duration timeout, Scheduler scheduler, Executor executor) {
        return sink(Map.of("*", trainer), timeout, scheduler, executor);
    }

    /**
     * One sink for the trainers of several domains ({@code domain -> trainer}), as one stream feeds
     * them (a single trainer takes every batch, whatever the key).
     */
    public static BatchSink sink(Map<String, ActorRef<Command>> trainers, Duration timeout, Scheduler scheduler, Executor executor) {
        Map<String, ActorRef<Command>> byDomain = Map.copyOf(trainers);
        return new BatchSink() {
            @Override
            public CompletionStage<Map<TopicPartition, Long>> accept(PackedBatch batch) {
                ActorRef<Command> t = byDomain.size() == 1 ? byDomain.values().iterator().next() : byDomain.get(batch.domain());
                if (t == null) {
                    return CompletableFuture.failedFuture(new IllegalStateException("no trainer for domain " + batch.domain()));
                }
                return AskPattern.<Command, Trained>askWithStatus(t, r -> new Train(batch, r), timeout, scheduler)
                        .thenApplyAsync(Trained::durableOffsets, executor);
            }

            @Override
            public CompletionStage<Map<String, Map<TopicPartition, Long>>> flush() {
                List<CompletableFuture<Flushed>> asks = new ArrayList<>();
                byDomain.values().forEach(t -> asks.add(AskPattern.<Command, Flushed>askWithStatus(t, Flush::new, timeout, scheduler)
                        .toCompletableFuture()));
                return CompletableFuture.allOf(asks.toArray(CompletableFuture[]::new)).thenApplyAsync(x -> {
                    Map<String, Map<TopicPartition, Long>> out = new HashMap<>();
                    asks.forEach(f -> out.put(f.join().domain(), f.join().offsets()));
                    return out;
                }, executor);
            }
        };
    }

    /** The resume points stored in the latest checkpoint under {@code checkpointRoot} (empty when none). */
    public static Map<TopicPartition, ResumePoint> resumePoints(Path checkpointRoot) throws IOException {
        Optional<Path> latest = TrainerCheckpoint.latest(checkpointRoot);
        return latest.isEmpty() ? Map.of() : ResumePoint.fromMetadata(TrainerCheckpoint.info(latest.get()).metadata());
    }

    private TrainerActor(ActorContext<Command> ctx, TimerScheduler<Command> timers, Settings s, LlamaModel model,
                         TextTokenizer tok, ActorRef<AdapterRegistryActor.Command> registry,
                         ActorRef<PromotionSupervisor.Command> supervisor, Health health, CheckpointReplica replica) {
        super(ctx);
        Autograd.off();
        this.s = s;
        this.model = model;
        this.replica = replica;
        this.tok = tok;
        this.registry = registry;
        this.supervisor = supervisor;
        this.health = health;
        this.timers = timers;
        this.reservoir = new Reservoir(tok, s.sampleFacts(), s.sampleTexts(), s.domain().hashCode());
        try {
            Optional<Path> latest = recoverCheckpoint(ctx, s);
            double stored = 1.0;
            if (latest.isPresent()) {
                Map<String, String> md = TrainerCheckpoint.info(latest.get()).metadata();
                resume.putAll(ResumePoint.fromMetadata(md));
                stored = Double.parseDouble(md.getOrDefault(LR_SCALE_KEY, "1"));
            }
            if (s.ledger()) {
                long keepBytes = latest.isPresent()
                        ? Long.parseLong(TrainerCheckpoint.info(latest.get()).metadata().getOrDefault(LEDGER_KEY, "0")) : 0;
                cutLedger(s.ledgerFile(), keepBytes);
            }
            double backoff = Math.pow(s.lrBackoff(), health.divergences / s.lrBackoffAfter());
            this.lrScale = Math.min(stored, backoff);
            TrainerConfig cfg = scaled(s.config(), lrScale);
            if (latest.isPresent()) {
                IncrementalTrainer resumed;
                try {
                    resumed = TrainerCheckpoint.resume(model, s.spec(), cfg, latest.get());
                } catch (TrainerCheckpoint.Incompatible e) {
                    throw e; // a configuration change, not damage: the checkpoints stay
                } catch (IOException | RuntimeException e) {
                    // validated but still unreadable: set it aside; the restart by supervision takes the previous one
                    TrainerCheckpoint.quarantine(s.checkpointRoot(), latest.get(), e.toString());
                    MoraEvent.publish(ctx.getSystem(), new MoraEvent.StateRepaired(s.domain(), latest.get().toString(),
                            "quarantined", e.toString()));
                    throw new UncheckedIOException(new IOException("trainer " + s.domain() + ": checkpoint " + latest.get()
                            + " cannot be resumed; moved to quarantine", e));
                }
                this.trainer = resumed;
                ctx.getLog().info("trainer {}: resumed from {} (step {}, lr {})", s.domain(), latest.get().getFileName(),
                        trainer.step(), cfg.lr());
            } else {
                this.trainer = new IncrementalTrainer(model, s.spec(), cfg);
                ctx.getLog().info("trainer {}: new {} adapter (lr {})", s.domain(), s.spec().label(), cfg.lr());
            }
        } catch (IOException e) {
            throw new UncheckedIOException("trainer " + s.domain() + ": cannot read checkpoints in " + s.checkpointRoot(), e);
        }
        this.savedStep = trainer.step();
        Map<TopicPartition, Long> restored = new HashMap<>();
        resume.forEach((tp, p) -> restored.put(tp, p.offset()));
        this.savedOffsets = Map.copyOf(restored);
        if (s.every() != null) {
            timers.startTimerWithFixedDelay(new Tick(), s.every());
        }
    }

    /** The checkpoint to resume from; damaged ones are quarantined, reported as events and logged (loudly when none is left). */
    private static Optional<Path> recoverCheckpoint(ActorContext<Command> ctx, Settings s) throws IOException {
        TrainerCheckpoint.Recovery rec = TrainerCheckpoint.recover(s.checkpointRoot());
        for (TrainerCheckpoint.Skipped k : rec.skipped()) {
            ctx.getLog().warn("trainer {}: checkpoint {} is damaged ({}); trying the previous one", s.domain(), k.dir().getFileName(),
                    k.reason());
            MoraEvent.publish(ctx.getSystem(), new MoraEvent.StateRepaired(s.domain(), k.dir().toString(), "quarantined", k.reason()));
        }
        if (rec.damaged() && rec.chosen().isPresent()) {
            MoraEvent.publish(ctx.getSystem(), new MoraEvent.StateRepaired(s.domain(), rec.chosen().get().toString(),
                    "fallback", "resuming from an older checkpoint"));
        } else if (rec.damaged()) {
            ctx.getLog().error("trainer {}: NO USABLE CHECKPOINT in {} (every one is damaged; see {}/): STARTING A NEW ADAPTER FROM "
                    + "SCRATCH", s.domain(), s.checkpointRoot(), TrainerCheckpoint.QUARANTINE);
            MoraEvent.publish(ctx.getSystem(), new MoraEvent.StateRepaired(s.domain(), s.checkpointRoot().toString(), "fresh_start",
                    "no usable checkpoint"));
        }
        return rec.chosen();
    }

    static TrainerConfig scaled(TrainerConfig c, double scale) {
        return new TrainerConfig(c.lr() * scale, c.schedule(), c.warmupSteps(), c.totalSteps(), c.minLrRatio(),
                c.weightDecay(), c.clipNorm(), c.gradAccum(), c.completionOnly(), c.measureAfter(), c.remoraEvery(),
                c.remoraWarmup(), c.klWeight(), c.klOnPrompts());
    }

    /** The learning-rate factor in effect (1 until divergences backed it off). */
    double lrScale() {
        return lrScale;
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Train.class, this::onTrain)
                .onMessage(Tick.class, t -> onTick())
                .onMessage(CheckpointNow.class, this::onCheckpointNow)
                .onMessage(Stop.class, this::onStop)
                .onMessage(Flush.class, this::onFlush)
                .onMessage(Published.class, this::onPublished)
                .onSignal(PreRestart.class, sig -> release())
                .onSignal(PostStop.class, sig -> release())
                .build();
    }

    private Behavior<Command> release() {
        trainer.close(); // detaches the adapters from the shared model
        return this;
    }

    private Behavior<Command> onTrain(Train m) {
        Autograd.off(); // per message: the dispatcher may hand this actor any of its threads
        if (health.pendingRestart != null) {
            String why = health.pendingRestart;
            health.pendingRestart = null;
            m.replyTo().tell(StatusReply.error("trainer " + s.domain() + " restarted from its last checkpoint: " + why));
            return this;
        }
        StepResult r;
        try {
            r = trainer.step(m.batch().batch());
        } catch (RuntimeException e) {
            throw fail(m, "step failed: " + e, "exception", e);
        }
        double loss = r.lossBefore();
        if (!Double.isFinite(loss)) {
            throw fail(m, "non-finite loss " + loss + " at micro step " + r.microStep(), "nan", null);
        }
        if (judged >= s.divergenceWarmup() && loss > s.divergenceFactor() * runningLoss) {
            throw fail(m, String.format(Locale.ROOT, "loss diverged: %.4f > %.1f x running mean %.4f", loss,
                    s.divergenceFactor(), runningLoss), "divergence", null);
        }
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.Stepped(s.domain(), r.step(), loss, r.lossAfter(), r.lr(),
                r.tokens(), (long) (r.millis() * 1e6), r.klToBase()));
        runningLoss = Double.isNaN(runningLoss) ? loss : 0.9 * runningLoss + 0.1 * loss;
        judged++;
        progressiveSum += loss;
        progressiveCount++;
        resume.putAll(m.batch().resume());
        reservoir.add(m.batch().batch());
        if (s.ledger()) {
            unledgered.addAll(m.batch().completedIds());
        }
        Optional<Path> ckpt = Optional.empty();
        if (r.updated() && trainer.step() - savedStep >= s.everySteps()) {
            try {
                ckpt = checkpoint();
            } catch (RuntimeException e) {
                // the state trained since the last checkpoint cannot be saved: start again from that one
                throw fail(m, "checkpoint failed: " + e, "exception", e);
            }
        }
        Map<TopicPartition, Long> durable = undelivered;
        undelivered = Map.of();
        m.replyTo().tell(StatusReply.success(new Trained(r, durable, ckpt)));
        return this;
    }

    private TrainingFailure fail(Train m, String why, String reason, Throwable cause) {
        boolean divergence = reason.equals("divergence");
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.TrainFailed(s.domain(), reason, why));
        health.failures++;
        if (divergence) {
            health.divergences++;
        }
        getContext().getLog().warn("trainer {}: {}; restarting from the last checkpoint (failures {}, divergences {})",
                s.domain(), why, health.failures, health.divergences);
        m.replyTo().tell(StatusReply.error("trainer " + s.domain() + " restarted from its last checkpoint: " + why));
        return new TrainingFailure(why, divergence, cause);
    }

    private Behavior<Command> onTick() {
        if (trainer.step() > savedStep && trainer.microStep() % trainer.config().gradAccum() == 0) {
            try {
                checkpoint();
            } catch (RuntimeException e) {
                String why = "timed checkpoint failed: " + e;
                MoraEvent.publish(getContext().getSystem(), new MoraEvent.TrainFailed(s.domain(), "exception", why));
                health.failures++;
                health.pendingRestart = why;
                getContext().getLog().warn("trainer {}: {}; restarting from the last checkpoint (failures {})", s.domain(), why,
                        health.failures);
                throw new TrainingFailure(why, false, e);
            }
        }
        return this;
    }

    private Behavior<Command> onCheckpointNow(CheckpointNow m) {
        boolean due = trainer.step() > savedStep && trainer.microStep() % trainer.config().gradAccum() == 0;
        m.replyTo().tell(StatusReply.success(due ? checkpoint() : Optional.empty()));
        return this;
    }

    private Behavior<Command> onFlush(Flush m) {
        if (trainer.step() > savedStep && trainer.microStep() % trainer.config().gradAccum() == 0) {
            checkpoint();
        }
        undelivered = Map.of(); // reported here
        m.replyTo().tell(StatusReply.success(new Flushed(s.domain(), savedOffsets)));
        return this;
    }

    private Behavior<Command> onStop(Stop m) {
        boolean due = trainer.step() > savedStep && trainer.microStep() % trainer.config().gradAccum() == 0;
        m.replyTo().tell(StatusReply.success(due ? checkpoint() : Optional.empty()));
        return Behaviors.stopped();
    }

    /** Saves a checkpoint, makes its offsets deliverable, and publishes its adapter. */
    private Optional<Path> checkpoint() {
        Map<String, String> md = new LinkedHashMap<>(ResumePoint.toMetadata(resume));
        md.put(LR_SCALE_KEY, Double.toString(lrScale));
        md.put(DOMAIN_KEY, s.domain());
        Path dir;
        long t0 = System.nanoTime();
        try {
            if (s.ledger()) {
                md.put(LEDGER_KEY, Long.toString(appendLedger(s.ledgerFile(), unledgered)));
                unledgered.clear();
            }
            dir = TrainerCheckpoint.save(trainer, s.checkpointRoot(), md, s.keep());
        } catch (IOException e) {
            throw new UncheckedIOException("trainer " + s.domain() + ": checkpoint failed", e);
        }
        savedStep = trainer.step();
        if (replica != null) {
            try {
                replica.export(s.domain(), dir, s.ledger() ? s.ledgerFile() : null);
            } catch (Exception e) {
                // the local checkpoint is durable: training goes on; a node that replaces this one
                // resumes from the last export and trains the records since then again
                getContext().getLog().error("trainer {}: checkpoint {} NOT exported to the state store: {}", s.domain(),
                        dir.getFileName(), e.toString());
            }
        }
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.Checkpointed(s.domain(), savedStep, System.nanoTime() - t0));
        Map<TopicPartition, Long> offsets = new HashMap<>();
        resume.forEach((tp, p) -> offsets.put(tp, p.offset()));
        undelivered = offsets;
        savedOffsets = Map.copyOf(offsets);
        double progressive = progressiveCount == 0 ? Double.NaN : progressiveSum / progressiveCount;
        progressiveSum = 0;
        progressiveCount = 0;
        Map<String, String> info = new LinkedHashMap<>();
        info.put("checkpoint", dir.toString());
        info.put("step", Long.toString(trainer.step()));
        info.put("progressive_loss", Double.toString(progressive));
        long step = trainer.step();
        getContext().getLog().info("trainer {}: checkpoint {} (progressive loss {})", s.domain(), dir.getFileName(), progressive);
        Path adapter = dir.resolve("adapter");
        // a per-request reply actor, so each reply keeps its own step (a message adapter would be replaced)
        getContext().ask(entryReplies(), registry, Duration.ofSeconds(60),
                r -> new AdapterRegistryActor.Publish(s.domain(), adapter, info, r),
                (r, err) -> new Published(err != null ? StatusReply.error(err) : r, step, progressive));
        return Optional.of(dir);
    }

    /** Appends {@code ids} to the ledger, fsyncs it, and returns its length. */
    static long appendLedger(Path file, List<String> ids) throws IOException {
        Files.createDirectories(file.getParent());
        StringBuilder sb = new StringBuilder();
        ids.forEach(id -> sb.append(escapeLedger(id)).append('\n'));
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND)) {
            ByteBuffer buf = ByteBuffer.wrap(sb.toString().getBytes(StandardCharsets.UTF_8));
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
            ch.force(true);
            return ch.size();
        }
    }

    /** Cuts the ledger back to what the checkpoint absorbed (entries appended by a checkpoint that never landed). */
    static void cutLedger(Path file, long bytes) throws IOException {
        if (Files.exists(file) && Files.size(file) > bytes) {
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                ch.truncate(bytes);
                ch.force(true);
            }
        }
    }

    /**
     * The record ids in {@code checkpointRoot}'s ledger, in training order (empty when none). A line
     * that is torn (no final newline) or not valid UTF-8 is skipped with a warning.
     */
    public static List<String> ledger(Path checkpointRoot) throws IOException {
        Path f = checkpointRoot.resolve(LEDGER_FILE);
        if (!Files.exists(f)) {
            return List.of();
        }
        byte[] all = Files.readAllBytes(f);
        List<String> out = new ArrayList<>();
        int skipped = 0;
        int start = 0;
        java.nio.charset.CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder();
        for (int i = 0; i <= all.length; i++) {
            if (i < all.length && all[i] != '\n') {
                continue;
            }
            if (i == all.length && start == all.length) {
                break;
            }
            boolean torn = i == all.length; // the last line has no newline: a write that never finished
            String line = null;
            if (!torn) {
                try {
                    line = utf8.decode(ByteBuffer.wrap(all, start, i - start)).toString();
                } catch (java.nio.charset.CharacterCodingException e) {
                    line = null;
                }
            }
            if (line == null || line.indexOf('\0') >= 0) {
                skipped++;
            } else {
                out.add(unescapeLedger(line));
            }
            start = i + 1;
        }
        if (skipped > 0) {
            org.slf4j.LoggerFactory.getLogger(TrainerActor.class).warn("ledger {}: skipped {} torn or corrupt line(s)", f, skipped);
        }
        return out;
    }

    /** One ledger line per id, whatever it holds: backslash, newline and carriage return are escaped. */
    static String escapeLedger(String id) {
        if (id.indexOf('\\') < 0 && id.indexOf('\n') < 0 && id.indexOf('\r') < 0) {
            return id;
        }
        return id.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r");
    }

    static String unescapeLedger(String line) {
        if (line.indexOf('\\') < 0) {
            return line;
        }
        StringBuilder sb = new StringBuilder(line.length());
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '\\' && i + 1 < line.length()) {
                char n = line.charAt(++i);
                sb.append(n == 'n' ? '\n' : n == 'r' ? '\r' : n);
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    @SuppressWarnings("unchecked")
    private static Class<StatusReply<AdapterRegistry.Entry>> entryReplies() {
        return (Class<StatusReply<AdapterRegistry.Entry>>) (Class<?>) StatusReply.class;
    }

    private Behavior<Command> onPublished(Published p) {
        if (p.reply().isError()) {
            getContext().getLog().warn("trainer {}: publish of step {} failed: {}", s.domain(), p.step(), p.reply().getError().getMessage());
            return this;
        }
        AdapterRegistry.Entry e = p.reply().getValue();
        supervisor.tell(new PromotionSupervisor.CandidateReady(e.version(), e.dir(), reservoir.snapshot(), p.step(), p.progressiveLoss()));
        return this;
    }
}
