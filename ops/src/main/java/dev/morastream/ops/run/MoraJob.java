package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.cluster.DomainLeases;
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
 * trainers (restarted from their checkpoints when it fails): one stream for every domain on a single
 * node; in a cluster, one stream (and consumer group) per domain whose lease this node holds
 * ({@link DomainLeases}), started when the lease is acquired and stopped with a final checkpoint
 * when it is handed over. It turns what the actors report into metrics, console lines, serving
 * swaps and promotion records. Every piece of state lives under the data directory, so a restart
 * resumes: trainers from their checkpoints, the stream from the checkpoints' offsets, serving from
 * the registry's aliases.
 *
 * <p>{@link #close()} is the graceful stop: the stream drains on one node (in a cluster each stream
 * stops at once, its partitions handed over), every trainer writes a final checkpoint, the offsets
 * it holds are committed, then serving, the actors and the broker stop.
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
    /** Acquires and releases the domains' leases one at a time, in the order sharding asks. */
    private final ExecutorService leases = Executors.newSingleThreadExecutor(daemon("mora-leases"));
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
    private List<String> domains = List.of(); // trainable on this node, sorted (in a cluster: those whose lease it may hold)
    private RegistryReplica replica; // the cluster's view of the registry; null: one node
    private AdapterRegistry trainingRegistry; // opened once: a second instance would delete the first one's files in progress
    private final Map<String, StateStore> writers = new java.util.concurrent.ConcurrentHashMap<>();
    /**
     * The domains whose state-store writers this node may open: those whose lease it holds (every
     * domain it trains, off a cluster). Opening a writer fences the other node's, so a node must
     * never open one of a domain it gave up (a late decision of its supervisor, say).
     */
    private final Set<String> held = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final Object trainingLock = new Object(); // taken before a run's lock, never inside it
    /** The training streams running here, by consumer group: one for every domain on one node; one per domain held, in a cluster. */
    private final Map<String, StreamRun> runs = new java.util.concurrent.ConcurrentHashMap<>();
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
        List<String> domains = cfg.cluster().trains() ? cfg.stream().decoder().domains().stream().sorted().toList() : List.of();
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
        if (!leased) {
            held.addAll(domains);
        }
        JobGuardian.Settings gs = leased || domains.isEmpty() ? null : trainingSettings(domains, cfg.kafka().groupId());
        system = ActorSystem.create(gs == null ? JobGuardian.create(new Hooks()) : JobGuardian.create(gs, new Hooks()), "morastream",
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
            timers.scheduleWithFixedDelay(() -> jobMetrics.measureLag(kafka.admin(),
                            Set.copyOf(runs.keySet()), k.topics()), 0,
                    k.lagInterval().toMillis(), TimeUnit.MILLISECONDS);
        }
        if (leased) {
            // Cluster Sharding spreads the domains' leases over the trainer nodes: each domain trains on one node at a time
            progress.say("training: waiting for the leases of " + domains + " (the cluster's trainer nodes share the domains)");
            DomainLeases.init(system, domains, new Leases());
        } else if (!domains.isEmpty()) {
            StreamRun all = new StreamRun(Set.copyOf(domains), cfg.kafka().groupId(), true);
            runs.put(all.group(), all);
            startStream(all);
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

    /** The domain the demo's facts are of. */
    private String demoDomain() {
        String d = cfg.stream().decoder().defaultDomain();
        return d != null ? d : domains.get(0);
    }

    /**
     * The demo stream of facts, fed by the node that trains its domain. In a cluster it feeds a fresh
     * topic only: a node taking the domain's lease over must not feed the facts a second time.
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
            demo = new DemoFeed(cfg.demo(), kafka.bootstrap(), k.client(), k.topics().get(0), demoDomain(), cfg.dataDir());
            DemoFeed.Fact f = demo.facts().get(0);
            progress.say("try: curl -s " + serving.url() + "/v1/completions -H 'Content-Type: application/json' -d '{\"model\": \""
                    + demoDomain() + "\", \"prompt\": " + JSON.writeValueAsString(f.prompt()) + ", \"max_tokens\": 8, \"stop\": [\"\\n\"]}'"
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
     * What training {@code trained} needs, made ready: in a cluster, the domains' state-store writers
     * opened (which fences a previous holder's) and each domain's exported checkpoint restored when
     * this disk has none as new; then damaged checkpoints are set aside (before the trainers and the
     * stream read them) and {@code group} rewound where a domain fell back.
     */
    private JobGuardian.Settings trainingSettings(List<String> trained, String group) throws IOException {
        Map<String, CheckpointReplica> exported = new HashMap<>();
        if (replica != null) {
            for (String d : trained) {
                registryWriter(d);
                CheckpointReplica c = new CheckpointReplica(checkpointWriter(d));
                exported.put(d, c);
                c.restore(d, cfg.checkpoints(d)).ifPresent(dir -> progress.say("trainer " + d + ": restored checkpoint "
                        + dir.getFileName() + " from the state store (none as new on this node's disk)"));
            }
        }
        kafka.rewindGroup(group, recoverCheckpoints(trained));
        List<JobGuardian.Domain> settings = new ArrayList<>();
        for (String d : trained) {
            int i = domains.indexOf(d); // the trainer's device is the domain's, wherever and whenever it trains
            JobConfig.Trainer t = cfg.trainer(d);
            settings.add(new JobGuardian.Domain(new TrainerActor.Settings(d, t.spec(), t.config(), cfg.checkpoints(d),
                    t.checkpointEverySteps(), t.checkpointEvery(), t.keepCheckpoints(), t.divergenceFactor(), t.divergenceWarmup(),
                    t.backoffAfter(), t.backoff(), t.sampleFacts(), t.sampleTexts(), t.ledger()), models.forTrainer(i), exported.get(d)));
            progress.say("trainer " + d + ": " + t.spec().label() + " on " + models.trainerDevice(i));
        }
        if (trainingRegistry == null) {
            trainingRegistry = new AdapterRegistry(cfg.registryDir(), cfg.registryKeep());
        }
        return new JobGuardian.Settings(settings, models.model(), models.tokenizer(), JobData.evaluatorSettings(cfg, models.model()),
                trainingRegistry, replica, cfg::promotion, cfg.auditLog(), cfg.evaluator().timeout());
    }

    /** The consumer group of a domain's stream in a cluster: its own, so its commits are its own wherever it trains. */
    private String group(String domain) {
        return cfg.kafka().groupId() + "." + domain;
    }

    /** The writer of a domain's registry keys in the state store (identity {@code registry.<domain>}). */
    private StateStore registryWriter(String domain) {
        return writer("registry." + domain, domain);
    }

    /** The writer of a domain's exported checkpoints (identity {@code trainer.<domain>}). */
    private StateStore checkpointWriter(String domain) {
        return writer("trainer." + domain, domain);
    }

    private StateStore writer(String id, String domain) {
        if (!held.contains(domain)) {
            throw new IllegalStateException("domain '" + domain + "' is not trained on this node (its lease is elsewhere): its "
                    + "state-store writer " + id + " is not opened here, which would fence the holder's");
        }
        return writers.computeIfAbsent(id, kafka::openState);
    }

    /** Closes a domain's writers after its lease was handed over (the next holder's writers fence them anyway). */
    private void closeWriters(String domain) {
        held.remove(domain);
        quietly(writers.remove("registry." + domain));
        quietly(writers.remove("trainer." + domain));
    }

    /**
     * The leases of the domains this node holds: a domain's trainer and stream start when its lease
     * is acquired here and stop (final checkpoint, offsets committed) when it is handed over.
     */
    private final class Leases implements DomainLeases.Holder {
        @Override
        public CompletionStage<Void> acquired(String domain) {
            return CompletableFuture.runAsync(() -> {
                synchronized (trainingLock) {
                    if (stopping || runs.containsKey(group(domain))) {
                        return;
                    }
                    progress.say("training: this node holds the lease of " + domain + "; training it");
                    held.add(domain);
                    try {
                        JobGuardian.Settings gs = trainingSettings(List.of(domain), group(domain));
                        trainers = AskPattern.<JobGuardian.Command, Map<String, ActorRef<TrainerActor.Command>>>ask(system,
                                r -> new JobGuardian.StartTraining(gs, r), ASK, system.scheduler()).toCompletableFuture()
                                .get(ASK.toSeconds(), TimeUnit.SECONDS);
                    } catch (Exception e) {
                        progress.say("training " + domain + " could not start (" + rootCause(e) + "); stopping the job");
                        failed.complete("training " + domain + " could not start: " + rootCause(e));
                        return;
                    }
                    // of the streams reading the topics, the one of the first domain dead-letters what is rejected
                    StreamRun run = new StreamRun(Set.of(domain), group(domain), domain.equals(domains.get(0)));
                    runs.put(run.group(), run);
                    startStream(run);
                    if (domain.equals(demoDomain())) {
                        startDemo();
                    }
                }
            }, leases);
        }

        @Override
        public CompletionStage<Void> release(String domain) {
            return CompletableFuture.runAsync(() -> {
                if (runs.containsKey(group(domain)) || trainers.containsKey(domain)) {
                    progress.say("training: handing the lease of " + domain + " over (stopping its stream, final checkpoint)");
                    stopTraining(Set.of(domain));
                }
                closeWriters(domain);
            }, leases);
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
            progress.say("cluster: " + m.address() + " has the trainer role too: the domains' leases are spread over the trainer"
                    + " nodes; a node that leaves or dies hands its domains to the others");
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

    // ---- the streams, each restarted from the checkpoints whenever it fails ----

    /**
     * A training stream: its domains, its consumer group, whether it dead-letters (exactly one stream
     * of a cluster's does), and its control while it runs. {@code on} is false once it is stopped for
     * good (a stop, or its lease handed over): then a failure of it does not restart it.
     */
    private static final class StreamRun {
        private final Set<String> trained;
        private final String group;
        private final boolean letters;
        private volatile boolean on = true;
        private volatile Consumer.DrainingControl<Done> control;

        StreamRun(Set<String> trained, String group, boolean letters) {
            this.trained = Set.copyOf(trained);
            this.group = group;
            this.letters = letters;
        }

        String group() {
            return group;
        }
    }

    private synchronized PseudoRehearsal.Rows rehearsal() {
        if (rehearsal == null) {
            rehearsal = JobData.rehearsalRows(cfg, models.model(), models.tokenizer(), progress::say);
        }
        return rehearsal;
    }

    private void startStream(StreamRun run) {
        synchronized (run) {
            if (stopping || !run.on) {
                return;
            }
            JobConfig.Stream s = cfg.stream();
            Map<String, Map<TopicPartition, ResumePoint>> resume = new HashMap<>();
            Map<String, ActorRef<TrainerActor.Command>> own = new HashMap<>();
            Map<String, ActorRef<TrainerActor.Command>> all = trainers;
            for (String d : run.trained) {
                try {
                    resume.put(d, TrainerActor.resumePoints(cfg.checkpoints(d)));
                } catch (IOException e) {
                    throw new UncheckedIOException("cannot read the checkpoints of " + d, e);
                }
                if (all.containsKey(d)) {
                    own.put(d, all.get(d));
                }
            }
            BatchSink sink = TrainerActor.sink(own, s.trainerTimeout(), system.scheduler(), system.executionContext());
            ReplayMixer replay = s.replay().fraction() > 0 ? new ReplayMixer(s.replay(), models.tokenizer(), s.seqLen(), rehearsal()) : null;
            TrainingStream.Settings ts = new TrainingStream.Settings(kafka.bootstrap(), cfg.kafka().client(), run.group,
                    Set.copyOf(cfg.kafka().topics()), s.decoder(), s.seqLen(), s.batchSize(), s.decodeParallelism(), s.idleFlush(),
                    run.trained, run.letters);
            Consumer.DrainingControl<Done> c = TrainingStream.run(system, materializer, ts, models.tokenizer(), kafka.deadLetters(), sink,
                    resume, stats, replay);
            run.control = c;
            progress.say("stream: reading " + cfg.kafka().topics() + " as group " + run.group
                    + (run.trained.size() < domains.size() ? " for " + new java.util.TreeSet<>(run.trained) : "")
                    + (resume.values().stream().allMatch(Map::isEmpty) ? "" : ", resuming from the checkpoints' offsets " + resume));
            c.streamCompletion().whenComplete((done, err) -> {
                if (stopping || !run.on) {
                    return;
                }
                log.warn("stream of group {} stopped{}; restarting in {} from the trainers' checkpoints", run.group,
                        err == null ? "" : ": " + rootCause(err), s.restartBackoff());
                progress.say("stream " + run.group + " stopped (" + (err == null ? "completed" : rootCause(err))
                        + "); restarting from the checkpoints");
                jobMetrics.streamRestarted();
                timers.schedule(() -> startStream(run), s.restartBackoff().toMillis(), TimeUnit.MILLISECONDS);
            });
        }
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
        stopTraining(null);
        quietly(serving);
        if (system != null) {
            system.terminate();
            system.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
        }
        blocking.shutdownNow();
        leases.shutdownNow();
        quietly(kafka == null ? null : () -> kafka.close());
        quietly(metrics);
        quietly(models);
        quietly(lockFile); // releases the data-directory lock
        progress.say("stopped");
    }

    /**
     * Stops training {@code which} domains here ({@code null}: all; a graceful stop, or a lease handed
     * over): their streams drain on one node (the batch at a trainer finishes and its commit lands)
     * or, in a cluster, stop at once (partitions handed over), their trainers write final
     * checkpoints, and the offsets those hold are committed to each stream's group. Does nothing for
     * domains that do not train here.
     */
    private void stopTraining(Set<String> which) {
        synchronized (trainingLock) {
            List<StreamRun> stopped = new ArrayList<>();
            for (StreamRun r : List.copyOf(runs.values())) {
                if (which == null || which.containsAll(r.trained)) {
                    r.on = false;
                    runs.remove(r.group);
                    stopped.add(r);
                }
            }
            for (StreamRun r : stopped) {
                Consumer.DrainingControl<Done> c;
                synchronized (r) {
                    c = r.control; // a restart in progress has finished: no new control after on = false
                    r.control = null;
                }
                if (c != null) {
                    try {
                        // a cluster node hands its partitions over at once (the trainer checkpoints what it took, the
                        // revocation commits it, what is buffered is dropped and read again by the next holder), so a
                        // hand-over does not wait for a slow trainer to work off the stream's buffers; one node drains
                        (replica != null ? c.shutdown() : c.drainAndShutdown(system.executionContext())).toCompletableFuture()
                                .get(cfg.stream().trainerTimeout().toSeconds() + 30, TimeUnit.SECONDS);
                    } catch (Exception e) {
                        log.warn("stream stop of group {}: {}", r.group, e.toString());
                    }
                }
            }
            Set<String> domainsStopped = new java.util.HashSet<>(trainers.keySet());
            if (which != null) {
                domainsStopped.retainAll(which);
            }
            if (system != null && !domainsStopped.isEmpty()) {
                finalCheckpoints(domainsStopped, stopped);
            }
            Map<String, ActorRef<TrainerActor.Command>> left = new HashMap<>(trainers);
            left.keySet().removeAll(domainsStopped);
            trainers = Map.copyOf(left);
        }
    }

    /**
     * The trainers of {@code which} write final checkpoints; the offsets they hold are committed to
     * each stopped stream's group when every domain of that stream has one.
     */
    private void finalCheckpoints(Set<String> which, List<StreamRun> stopped) {
        Map<String, Map<TopicPartition, ResumePoint>> points = new HashMap<>();
        try {
            JobGuardian.Stopped done = AskPattern.<JobGuardian.Command, JobGuardian.Stopped>ask(system,
                    r -> new JobGuardian.Stop(FINAL_CHECKPOINT, Set.copyOf(which), r), FINAL_CHECKPOINT.plusSeconds(10), system.scheduler())
                    .toCompletableFuture().get(FINAL_CHECKPOINT.toSeconds() + 15, TimeUnit.SECONDS);
            done.failed().forEach((d, why) -> log.warn("trainer {}: no final checkpoint: {}", d, why));
            for (Map.Entry<String, Optional<Path>> e : done.finalCheckpoints().entrySet()) {
                e.getValue().ifPresent(p -> progress.say("trainer " + e.getKey() + ": final checkpoint " + p.getFileName()));
                points.put(e.getKey(), TrainerActor.resumePoints(cfg.checkpoints(e.getKey())));
            }
        } catch (Exception e) {
            log.warn("final checkpoints: {}", e.toString());
        }
        for (StreamRun r : stopped) {
            Map<String, Map<TopicPartition, ResumePoint>> own = new HashMap<>(points);
            own.keySet().retainAll(r.trained);
            kafka.commitFinal(r.group, own, r.trained.size());
        }
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
