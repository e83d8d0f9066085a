package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.cluster.TrainingLease;
import dev.morastream.actors.guardian.JobGuardian;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.registry.RegistryReplica;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.actors.trainer.CheckpointReplica;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.train.PseudoRehearsal;
import dev.morastream.models.train.TrainerCheckpoint;
import dev.morastream.ops.metrics.Metrics;
import dev.morastream.ops.serve.HttpApi;
import dev.morastream.actors.serving.ServingPool;
import dev.morastream.streams.BatchSink;
import dev.morastream.streams.StreamStats;
import dev.morastream.streams.TrainingStream;
import dev.morastream.streams.pack.ResumePoint;
import dev.morastream.streams.replay.ReplayMixer;
import dev.morastream.streams.state.StateStore;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.apache.pekko.stream.Materializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The main job ({@code bin/mora run}): the process around the actors. It holds the data
 * directory's lock and three resources — {@link KafkaSide} (broker, topics, producers),
 * {@link ModelSide} (the frozen base per device) and {@link ServingSide} (pool and HTTP API) — and
 * runs the actor system whose root, the {@link JobGuardian}, owns the trainers, the registry, the
 * evaluator and the supervisor. It runs the training stream from Kafka into the guardian's
 * trainers (restarted from their checkpoints when it fails) and turns what the actors report into
 * metrics, console lines, serving swaps and promotion records. Every piece of state lives under
 * the data directory, so a restart resumes: trainers from their checkpoints, the stream from the
 * checkpoints' offsets, serving from the registry's aliases.
 *
 * <p>{@link #close()} is the graceful stop: the stream drains (the batch at a trainer finishes and
 * its commit lands), every trainer writes a final checkpoint, the offsets it holds are committed,
 * then serving, the actors and the broker stop.
 */
public final class MoraJob implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(MoraJob.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration ASK = Duration.ofSeconds(30);
    private static final Duration FINAL_CHECKPOINT = Duration.ofSeconds(120);

    private final JobConfig cfg;
    private final Progress progress = new Progress();
    private final StreamStats stats = new StreamStats();
    private final ExecutorService blocking = Executors.newFixedThreadPool(2, daemon("mora-job"));
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor(daemon("mora-job-timer"));
    private final CompletableFuture<ServingSide> servingUp = new CompletableFuture<>();
    private final CompletableFuture<String> failed = new CompletableFuture<>();
    private FileChannel lockFile;
    private KafkaSide kafka;
    private ModelSide models;
    private Metrics metrics;
    private JobMetrics jobMetrics;
    private ActorSystem<JobGuardian.Command> system;
    private Materializer materializer;
    private volatile Map<String, ActorRef<TrainerActor.Command>> trainers = Map.of();
    private PseudoRehearsal.Rows rehearsal; // computed once, reused by every stream restart
    private ServingSide serving;
    private DemoFeed demo;
    private PromotionFollower follower;
    private List<String> domains = List.of(); // trained by this node (when it holds the training lease, in a cluster)
    private RegistryReplica replica; // the cluster's view of the registry; null: one node
    private final Map<String, StateStore> writers = new java.util.concurrent.ConcurrentHashMap<>();
    private final Object trainingLock = new Object(); // taken before streamLock, never inside it
    private final Object streamLock = new Object();
    private volatile boolean training; // the stream and trainers run here (false: a restart of the stream does not happen)
    private volatile Consumer.DrainingControl<Done> control;
    private volatile boolean stopping;
    private boolean closed;

    private MoraJob(JobConfig cfg) {
        this.cfg = cfg;
    }

    /** Starts everything; on failure, what was started is stopped and the error is thrown. */
    public static MoraJob start(JobConfig cfg) throws Exception {
        MoraJob job = new MoraJob(cfg);
        try {
            job.boot();
            return job;
        } catch (Exception | Error e) {
            try {
                job.close();
            } catch (Exception suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    private void boot() throws Exception {
        // a node without the trainer role trains nothing and decides nothing: it serves
        List<String> domains = cfg.cluster().trains() ? List.copyOf(cfg.stream().decoder().domains()) : List.of();
        for (String d : domains) {
            if (cfg.trainer(d).spec().method() == AdapterSpec.Method.FULL) {
                throw new IllegalArgumentException((cfg.domainTrainers().containsKey(d) ? "morastream.stream.domain-settings." + d
                        : "morastream.trainer") + ".method = full cannot be served as an adapter: use mora or lora");
            }
        }
        lock();
        progress.say("data directory " + cfg.dataDir());
        if (cfg.cluster().enabled()) {
            progress.say("cluster node " + cfg.cluster().host() + ":" + cfg.cluster().port() + " with roles " + cfg.cluster().roles()
                    + (cfg.cluster().seedNodes().isEmpty() ? ", starting the cluster" : ", joining " + cfg.cluster().seedNodes()));
        }
        kafka = KafkaSide.open(cfg, progress::say);
        models = ModelSide.load(cfg.baseModel(), progress::say);

        metrics = new Metrics();
        if (cfg.cluster().enabled()) {
            // every meter says which node of the cluster it is from (before any meter is registered)
            metrics.registry().config().commonTags("node", cfg.cluster().host() + ":" + cfg.cluster().port());
        }
        AdapterRegistry servingRegistry = new AdapterRegistry(cfg.registryDir(), cfg.registryKeep());
        Map<String, Integer> servingNow = new HashMap<>();
        for (String d : domains) {
            servingRegistry.alias(d).ifPresent(v -> servingNow.put(d, (int) v.number()));
        }
        jobMetrics = new JobMetrics(metrics.registry(), stats, domains, servingNow);
        stats.observe(jobMetrics);
        // what opening the registry repaired (quarantined versions, aliases that fell back, lost+found ...)
        for (AdapterRegistry.Damage d : servingRegistry.recovery()) {
            onEvent(new MoraEvent.StateRepaired(d.domain() == null ? "" : d.domain(), d.path().toString(), d.repair().id(), d.reason()));
        }
        this.domains = domains;
        // in a cluster, the state store: its reader here, the domains' writers where training runs
        replica = cfg.cluster().enabled() ? new RegistryReplica(kafka.openState(null), this::registryWriter) : null;
        boolean leased = cfg.cluster().enabled() && !domains.isEmpty();
        JobGuardian.Settings gs = leased ? null : trainingSettings();
        system = ActorSystem.create(leased ? JobGuardian.create(new Hooks()) : JobGuardian.create(gs, new Hooks()), "morastream",
                cfg.actorSystemConfig("morastream"));
        system.getWhenTerminated().thenRun(() -> {
            if (!stopping) {
                progress.say("the actor system stopped unexpectedly; stopping the job");
                failed.complete("the actor system stopped unexpectedly");
            }
        });
        materializer = Materializer.matFromSystem(system);
        trainers = AskPattern.<JobGuardian.Command, Map<String, ActorRef<TrainerActor.Command>>>ask(system,
                JobGuardian.GetTrainers::new, ASK, system.scheduler()).toCompletableFuture().get(ASK.toSeconds(), TimeUnit.SECONDS);

        HttpApi.AliasMover mover = new HttpApi.AliasMover() {
            @Override
            public CompletionStage<Void> move(AdapterVersion target, String cause) {
                return moveAlias(target, cause);
            }

            @Override
            public boolean fetch(AdapterVersion target) {
                // an admin move names a version this node has not served yet: it is in the cluster's store
                try {
                    return replica != null && replica.fetch(servingRegistry, target, Duration.ofSeconds(2)).isPresent();
                } catch (IOException e) {
                    log.warn("admin move: cannot fetch {} from the state store: {}", target, e.toString());
                    return false;
                }
            }
        };
        serving = ServingSide.start(cfg, models, servingRegistry, metrics, system, mover);
        servingUp.complete(serving);
        if (replica != null && cfg.cluster().serves()) {
            // serving follows the decisions of the domains other nodes train
            follower = new PromotionFollower(kafka.clientProps(), cfg.kafka().promotionsTopic(), replica, servingRegistry, serving.pool(),
                    d -> !trainers.containsKey(d), progress::say, metrics.registry()).start();
        }

        JobConfig.Kafka k = cfg.kafka();
        if (!domains.isEmpty()) {
            timers.scheduleWithFixedDelay(() -> jobMetrics.measureLag(kafka.admin(), k.groupId(), k.topics()), 0,
                    k.lagInterval().toMillis(), TimeUnit.MILLISECONDS);
        }
        if (leased) {
            // the oldest trainer node of the cluster trains; the others stand by (and serve, when they do)
            progress.say("training: waiting for the cluster's training lease (the oldest trainer node trains every domain)");
            TrainingLease.init(system, new Lease());
        } else if (!domains.isEmpty()) {
            training = true;
            startStream();
        }
        List<String> shown = List.copyOf(cfg.stream().decoder().domains());
        timers.scheduleWithFixedDelay(() -> progress.status(stats, !trainers.isEmpty(), shown, serving.pool()), 10, 10, TimeUnit.SECONDS);

        String url = serving.url();
        progress.say("serving the OpenAI-compatible API on " + url + "/v1 (models: " + url + "/v1/models, metrics: " + url + "/metrics)");
        serving.warm().whenComplete((v, e) -> progress.say(e == null ? "ready: " + url + "/health/ready" : "warm-up failed, not ready: " + e));

        if (!leased) {
            startDemo();
        }
    }

    /**
     * The demo stream of facts, fed by the node that trains. In a cluster it feeds a fresh topic only:
     * a node taking the training lease over must not feed the facts a second time.
     */
    private void startDemo() {
        JobConfig.Kafka k = cfg.kafka();
        if (!cfg.demo().enabled() || domains.isEmpty() || demo != null) {
            return;
        }
        try {
            if (cfg.cluster().enabled() && !topicEmpty(k.topics().get(0))) {
                progress.say("demo: " + k.topics().get(0) + " has records already: not feeding it again");
                return;
            }
            demo = new DemoFeed(cfg.demo(), kafka.bootstrap(), k.client(), k.topics().get(0), cfg.stream().decoder().defaultDomain() != null
                    ? cfg.stream().decoder().defaultDomain() : domains.get(0), cfg.dataDir());
            DemoFeed.Fact f = demo.facts().get(0);
            progress.say("try: curl -s " + serving.url() + "/v1/completions -H 'Content-Type: application/json' -d '{\"model\": \""
                    + domains.get(0) + "\", \"prompt\": " + JSON.writeValueAsString(f.prompt()) + ", \"max_tokens\": 8, \"stop\": [\"\\n\"]}'"
                    + "   (the demo teaches:" + f.completion() + ")");
            demo.start();
        } catch (Exception e) {
            log.error("demo feed not started: {}", e.toString());
        }
    }

    /** Whether every partition of {@code topic} ends at offset 0. */
    private boolean topicEmpty(String topic) throws Exception {
        var parts = kafka.admin().describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic).partitions();
        Map<TopicPartition, org.apache.kafka.clients.admin.OffsetSpec> latest = new HashMap<>();
        parts.forEach(pi -> latest.put(new TopicPartition(topic, pi.partition()), org.apache.kafka.clients.admin.OffsetSpec.latest()));
        return kafka.admin().listOffsets(latest).all().get(30, TimeUnit.SECONDS).values().stream().allMatch(o -> o.offset() == 0);
    }

    /**
     * What training needs, made ready: in a cluster, the domains' state-store writers opened (which
     * fences a previous holder's) and each domain's exported checkpoint restored when this disk has
     * none as new; then damaged checkpoints are set aside (before the trainers and the stream read
     * them) and the group rewound where a domain fell back.
     */
    private JobGuardian.Settings trainingSettings() throws IOException {
        Map<String, CheckpointReplica> exported = new HashMap<>();
        if (replica != null) {
            for (String d : domains) {
                registryWriter(d);
                CheckpointReplica c = new CheckpointReplica(checkpointWriter(d));
                exported.put(d, c);
                c.restore(d, cfg.checkpoints(d)).ifPresent(dir -> progress.say("trainer " + d + ": restored checkpoint "
                        + dir.getFileName() + " from the state store (none as new on this node's disk)"));
            }
        }
        kafka.rewindGroup(recoverCheckpoints(domains));
        List<JobGuardian.Domain> trained = new ArrayList<>();
        for (int i = 0; i < domains.size(); i++) {
            String d = domains.get(i);
            JobConfig.Trainer t = cfg.trainer(d);
            trained.add(new JobGuardian.Domain(new TrainerActor.Settings(d, t.spec(), t.config(), cfg.checkpoints(d),
                    t.checkpointEverySteps(), t.checkpointEvery(), t.keepCheckpoints(), t.divergenceFactor(), t.divergenceWarmup(),
                    t.backoffAfter(), t.backoff(), t.sampleFacts(), t.sampleTexts(), t.ledger()), models.forTrainer(i), exported.get(d)));
            progress.say("trainer " + d + ": " + t.spec().label() + " on " + models.trainerDevice(i));
        }
        return new JobGuardian.Settings(trained, models.model(), models.tokenizer(), JobData.evaluatorSettings(cfg, models.model()),
                new AdapterRegistry(cfg.registryDir(), cfg.registryKeep()), replica, cfg::promotion, cfg.auditLog(),
                cfg.evaluator().timeout());
    }

    /** The writer of a domain's registry keys in the state store (identity {@code registry.<domain>}). */
    private StateStore registryWriter(String domain) {
        return writers.computeIfAbsent("registry." + domain, kafka::openState);
    }

    /** The writer of a domain's exported checkpoints (identity {@code trainer.<domain>}). */
    private StateStore checkpointWriter(String domain) {
        return writers.computeIfAbsent("trainer." + domain, kafka::openState);
    }

    /** The training lease of a cluster node: training starts when it is acquired and stops when it is handed over. */
    private final class Lease implements TrainingLease.Holder {
        @Override
        public CompletionStage<Void> acquired() {
            return CompletableFuture.runAsync(() -> {
                synchronized (trainingLock) {
                    if (stopping) {
                        return;
                    }
                    progress.say("training: this node holds the training lease; training " + domains);
                    try {
                        JobGuardian.Settings gs = trainingSettings();
                        trainers = AskPattern.<JobGuardian.Command, Map<String, ActorRef<TrainerActor.Command>>>ask(system,
                                r -> new JobGuardian.StartTraining(gs, r), ASK, system.scheduler()).toCompletableFuture()
                                .get(ASK.toSeconds(), TimeUnit.SECONDS);
                    } catch (Exception e) {
                        progress.say("training could not start (" + rootCause(e) + "); stopping the job");
                        failed.complete("training could not start: " + rootCause(e));
                        return;
                    }
                    training = true;
                    startStream();
                    startDemo();
                }
            }, blocking);
        }

        @Override
        public CompletionStage<Void> release() {
            return CompletableFuture.runAsync(() -> {
                progress.say("training: handing the training lease over (draining, final checkpoints)");
                stopTraining();
            }, blocking);
        }
    }

    /** One job per data directory: a second one would train the same lineages twice. */
    private void lock() throws IOException {
        Files.createDirectories(cfg.dataDir());
        lockFile = FileChannel.open(cfg.dataDir().resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock lock = lockFile.tryLock();
        if (lock == null) {
            lockFile.close();
            lockFile = null;
            throw new IllegalStateException("another morastream run is using the data directory " + cfg.dataDir());
        }
    }

    /**
     * Quarantines damaged checkpoints (reporting each); returns, for the domains that fell back to an
     * older one, the offsets the stream must go back to.
     */
    private Map<String, Map<TopicPartition, ResumePoint>> recoverCheckpoints(List<String> domains) throws IOException {
        Map<String, Map<TopicPartition, ResumePoint>> rewind = new HashMap<>();
        for (String d : domains) {
            TrainerCheckpoint.Recovery rec = TrainerCheckpoint.recover(cfg.checkpoints(d));
            for (TrainerCheckpoint.Skipped sk : rec.skipped()) {
                onEvent(new MoraEvent.StateRepaired(d, sk.dir().toString(), "quarantined", sk.reason()));
            }
            if (rec.damaged()) {
                onEvent(new MoraEvent.StateRepaired(d, cfg.checkpoints(d).toString(), rec.chosen().isPresent() ? "fallback" : "fresh_start",
                        rec.chosen().map(c -> "resuming from " + c.getFileName()).orElse("no usable checkpoint: a new adapter from scratch")));
                if (rec.chosen().isPresent()) {
                    rewind.put(d, ResumePoint.fromMetadata(TrainerCheckpoint.info(rec.chosen().get()).metadata()));
                }
            }
        }
        return rewind;
    }

    private void onEvent(MoraEvent e) {
        jobMetrics.on(e);
        progress.on(e);
        if (e instanceof MoraEvent.MemberChanged m && m.status().equals("up") && !m.self() && m.roles().contains("trainer")
                && !domains.isEmpty()) {
            progress.say("cluster: " + m.address() + " has the trainer role too: one trainer node (the oldest) holds the training lease,"
                    + " the others stand by to take over when it leaves or dies");
        }
    }

    /** What the guardian reports, on its thread: metrics and console at once, serving swaps on {@link #blocking}. */
    private final class Hooks implements JobGuardian.Hooks {
        @Override
        public void onEvent(MoraEvent event) {
            MoraJob.this.onEvent(event);
        }

        @Override
        public void onPromoted(PromotionSupervisor.Promoted p) {
            // serve it, then tell other nodes on the promotions topic
            servingUp.thenAcceptAsync(s -> {
                s.swap(p.version());
                kafka.publish(p, timers, metrics.registry());
            }, blocking);
        }

        @Override
        public void onTrainerLost(String domain) {
            // a trainer that failed more often than its supervision allows stops for good: the job
            // cannot go on training that domain, so it stops (exit code 1 from bin/mora run) and a
            // restart resumes from the last checkpoint with fresh failure counters
            if (!stopping) {
                String why = "trainer trainer-" + domain + " stopped after repeated failures";
                progress.say(why + "; stopping the job (a restart resumes from the last checkpoint)");
                failed.complete(why);
            }
        }
    }

    // ---- the stream, restarted from the checkpoints whenever it fails ----

    private void startStream() {
        synchronized (streamLock) {
            startStreamLocked();
        }
    }

    private void startStreamLocked() {
        if (stopping || !training) {
            return;
        }
        JobConfig.Stream s = cfg.stream();
        Map<String, Map<TopicPartition, ResumePoint>> resume = new HashMap<>();
        for (String d : trainers.keySet()) {
            try {
                resume.put(d, TrainerActor.resumePoints(cfg.checkpoints(d)));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read the checkpoints of " + d, e);
            }
        }
        BatchSink sink = TrainerActor.sink(trainers, s.trainerTimeout(), system.scheduler(), system.executionContext());
        if (rehearsal == null && s.replay().fraction() > 0) {
            rehearsal = JobData.rehearsalRows(cfg, models.model(), models.tokenizer(), progress::say);
        }
        ReplayMixer replay = s.replay().fraction() > 0 ? new ReplayMixer(s.replay(), models.tokenizer(), s.seqLen(), rehearsal) : null;
        TrainingStream.Settings ts = new TrainingStream.Settings(kafka.bootstrap(), cfg.kafka().client(), cfg.kafka().groupId(),
                Set.copyOf(cfg.kafka().topics()), s.decoder(), s.seqLen(), s.batchSize(), s.decodeParallelism(), s.idleFlush());
        Consumer.DrainingControl<Done> c = TrainingStream.run(system, materializer, ts, models.tokenizer(), kafka.deadLetters(), sink,
                resume, stats, replay);
        control = c;
        progress.say("stream: reading " + cfg.kafka().topics() + " as group " + cfg.kafka().groupId()
                + (resume.values().stream().allMatch(Map::isEmpty) ? "" : ", resuming from the checkpoints' offsets " + resume));
        c.streamCompletion().whenComplete((done, err) -> {
            if (stopping || !training) {
                return;
            }
            log.warn("stream stopped{}; restarting in {} from the trainers' checkpoints",
                    err == null ? "" : ": " + rootCause(err), s.restartBackoff());
            progress.say("stream stopped (" + (err == null ? "completed" : rootCause(err)) + "); restarting from the checkpoints");
            jobMetrics.streamRestarted();
            timers.schedule(this::startStream, s.restartBackoff().toMillis(), TimeUnit.MILLISECONDS);
        });
    }

    /** The HTTP admin endpoints go through the guardian to the supervisor (audit log, listeners, promotions topic). */
    private CompletionStage<Void> moveAlias(AdapterVersion target, String cause) {
        String why = cause + " via the HTTP admin API";
        return AskPattern.<JobGuardian.Command, AdapterVersion>askWithStatus(system,
                        r -> new JobGuardian.MoveAlias(target, "rollback".equals(cause), why, r), ASK, system.scheduler())
                .thenAcceptAsync(v -> {
                    if (trainers.containsKey(v.domain())) {
                        serving.pool().swap(v); // decided here: serve it here
                    }
                }, blocking);
    }

    // ---- accessors ----

    public int port() {
        return serving.port();
    }

    public String bootstrapServers() {
        return kafka.bootstrap();
    }

    public ServingPool pool() {
        return serving.pool();
    }

    public Metrics metrics() {
        return metrics;
    }

    public StreamStats stats() {
        return stats;
    }

    public JobConfig config() {
        return cfg;
    }

    /** Completes (with the reason) when the job cannot go on and should be stopped and restarted. */
    public CompletableFuture<String> failed() {
        return failed;
    }

    /** Completes when the readiness generation succeeded. */
    public CompletableFuture<Void> warm() {
        return serving.warm();
    }

    // ---- graceful stop ----

    @Override
    public synchronized void close() throws Exception {
        if (closed) {
            return;
        }
        closed = true;
        stopping = true;
        progress.say("stopping: draining the stream, final checkpoints, committing offsets");
        timers.shutdownNow();
        if (kafka != null) {
            kafka.stopping();
        }
        quietly(demo);
        quietly(follower);
        stopTraining();
        quietly(serving);
        if (system != null) {
            system.terminate();
            system.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
        }
        blocking.shutdownNow();
        quietly(kafka == null ? null : () -> kafka.close());
        quietly(metrics);
        quietly(models);
        quietly(lockFile); // releases the data-directory lock
        progress.say("stopped");
    }

    /**
     * Stops training here (a graceful stop, or the training lease handed over): the stream drains
     * (the batch at a trainer finishes and its commit lands), every trainer writes its final
     * checkpoint, and the offsets they hold are committed. Does nothing when nothing trains.
     */
    private void stopTraining() {
        synchronized (trainingLock) {
            training = false;
            Consumer.DrainingControl<Done> c = control;
            control = null;
            if (c != null) {
                try {
                    c.drainAndShutdown(system.executionContext()).toCompletableFuture()
                            .get(cfg.stream().trainerTimeout().toSeconds() + 30, TimeUnit.SECONDS);
                } catch (Exception e) {
                    log.warn("stream drain: {}", e.toString());
                }
            }
            if (system != null && !trainers.isEmpty()) {
                finalCheckpoints();
            }
            trainers = Map.of();
        }
    }

    /** Every live trainer writes a final checkpoint; the offsets they hold are committed when every domain has one. */
    private void finalCheckpoints() {
        Map<String, Map<TopicPartition, ResumePoint>> points = new HashMap<>();
        try {
            JobGuardian.Stopped stopped = AskPattern.<JobGuardian.Command, JobGuardian.Stopped>ask(system,
                    r -> new JobGuardian.Stop(FINAL_CHECKPOINT, r), FINAL_CHECKPOINT.plusSeconds(10), system.scheduler())
                    .toCompletableFuture().get(FINAL_CHECKPOINT.toSeconds() + 15, TimeUnit.SECONDS);
            stopped.failed().forEach((d, why) -> log.warn("trainer {}: no final checkpoint: {}", d, why));
            for (Map.Entry<String, Optional<Path>> e : stopped.finalCheckpoints().entrySet()) {
                e.getValue().ifPresent(p -> progress.say("trainer " + e.getKey() + ": final checkpoint " + p.getFileName()));
                points.put(e.getKey(), TrainerActor.resumePoints(cfg.checkpoints(e.getKey())));
            }
        } catch (Exception e) {
            log.warn("final checkpoints: {}", e.toString());
        }
        kafka.commitFinal(points, trainers.size());
    }

    static String rootCause(Throwable t) {
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t.getMessage() == null ? t.toString() : t.getMessage();
    }

    static void quietly(AutoCloseable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            log.warn("while stopping: {}", e.toString());
        }
    }

    private static ThreadFactory daemon(String name) {
        return r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }
}
