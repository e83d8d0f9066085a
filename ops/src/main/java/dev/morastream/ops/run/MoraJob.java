package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.train.TrainerCheckpoint;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.ops.metrics.Metrics;
import dev.morastream.ops.serve.ChatTemplate;
import dev.morastream.ops.serve.HttpApi;
import dev.morastream.ops.serve.ServingPool;
import dev.morastream.streams.BatchSink;
import dev.morastream.streams.StreamStats;
import dev.morastream.streams.TrainingStream;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.pack.ResumePoint;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.models.train.PseudoRehearsal;
import dev.morastream.streams.replay.ReplayMixer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.LocalTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.SpawnProtocol;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.apache.pekko.stream.Materializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The main job ({@code bin/mora run}): Kafka (embedded or external) -> {@link TrainingStream} ->
 * one {@link TrainerActor} per domain -> {@link AdapterRegistryActor} -> {@link PromotionSupervisor}
 * (with the {@link EvaluatorActor}) -> the {@link ServingPool} behind the HTTP API, with metrics
 * and a progress log. Every piece of state lives under the data directory, so a restart resumes:
 * trainers from their checkpoints, the stream from the checkpoints' offsets, serving from the
 * registry's aliases.
 *
 * <p>{@link #close()} is the graceful stop: the stream drains (the batch at a trainer finishes and
 * its commit lands), every trainer writes a final checkpoint, the offsets it holds are committed,
 * then serving, the actors and the broker stop.
 */
public final class MoraJob implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(MoraJob.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration ASK = Duration.ofSeconds(30);

    private final JobConfig cfg;
    private final List<AutoCloseable> closeLast = new ArrayList<>(); // closed in reverse order
    private FileLock lock;
    private EmbeddedKafka kafka;
    private String bootstrap;
    private Admin admin;
    private NDManager root;
    private LlamaModel model;
    private final Map<Device, LlamaModel> models = new LinkedHashMap<>();
    private TextTokenizer tok;
    private PseudoRehearsal.Rows rehearsalRows; // computed once, reused by every stream restart
    private Metrics metrics;
    private ActorSystem<SpawnProtocol.Command> system;
    private Materializer materializer;
    private final StreamStats stats = new StreamStats();
    private JobMetrics jobMetrics;
    private final Progress progress = new Progress();
    private ActorRef<PromotionSupervisor.Command> supervisor;
    private final Map<String, ActorRef<TrainerActor.Command>> trainers = new LinkedHashMap<>();
    private DeadLetters deadLetters;
    private KafkaProducer<String, String> promotions;
    private ServingPool pool;
    private HttpApi api;
    private ServerBinding binding;
    private CompletableFuture<Void> warm;
    private DemoFeed demo;
    private final ExecutorService blocking = Executors.newFixedThreadPool(2, r -> {
        Thread t = new Thread(r, "mora-job");
        t.setDaemon(true);
        return t;
    });
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "mora-job-timer");
        t.setDaemon(true);
        return t;
    });
    private volatile Consumer.DrainingControl<Done> control;
    private volatile boolean stopping;
    private final CompletableFuture<String> failed = new CompletableFuture<>();
    private final Set<ActorRef<?>> dead = java.util.concurrent.ConcurrentHashMap.newKeySet();
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
        for (String d : cfg.stream().decoder().domains()) {
            if (cfg.trainer(d).spec().method() == dev.morastream.models.adapters.AdapterSpec.Method.FULL) {
                throw new IllegalArgumentException((cfg.domainTrainers().containsKey(d) ? "morastream.stream.domain-settings." + d
                        : "morastream.trainer") + ".method = full cannot be served as an adapter: use mora or lora");
            }
        }
        Files.createDirectories(cfg.dataDir());
        FileChannel lockFile = FileChannel.open(cfg.dataDir().resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        lock = lockFile.tryLock();
        if (lock == null) {
            lockFile.close();
            throw new IllegalStateException("another morastream run is using the data directory " + cfg.dataDir());
        }
        closeLast.add(lockFile);
        progress.say("data directory " + cfg.dataDir());

        // ---- Kafka ----
        JobConfig.Kafka k = cfg.kafka();
        if (k.embedded()) {
            kafka = EmbeddedKafka.start(cfg.kafkaDir());
            bootstrap = kafka.bootstrapServers();
            Files.writeString(cfg.kafkaDir().resolve("bootstrap.servers"), bootstrap + "\n", StandardCharsets.UTF_8);
            progress.say("embedded Kafka broker on " + bootstrap + " (data in " + cfg.kafkaDir() + ")");
        } else {
            bootstrap = k.bootstrapServers();
            progress.say("Kafka cluster " + bootstrap);
        }
        admin = Admin.create(clientProps());
        if (k.createTopics()) {
            createTopics();
        }

        // ---- model ----
        // one copy of the frozen base per device: serving and the evaluator use the first, trainer i
        // trains on GPU i mod n (one trainer per GPU when there are as many), or all on the CPU
        int gpus = Engine.getInstance().getGpuCount();
        Device first = gpus > 0 ? Device.gpu(0) : Device.cpu();
        root = NDManager.newBaseManager(first);
        model = LlamaModel.load(cfg.baseModel(), root);
        models.put(first, model);
        tok = TextTokenizer.forModel(cfg.baseModel(), model.config());
        progress.say(String.format(Locale.ROOT, "base model %s: %,d parameters on %s (%d GPU%s)", cfg.baseModel(),
                model.parameterCount(), model.device(), gpus, gpus == 1 ? "" : "s"));

        // ---- actors ----
        metrics = new Metrics();
        List<String> domains = List.copyOf(cfg.stream().decoder().domains());
        AdapterRegistry servingRegistry = new AdapterRegistry(cfg.registryDir(), cfg.registryKeep());
        Map<String, Integer> servingNow = new HashMap<>();
        for (String d : domains) {
            servingRegistry.alias(d).ifPresent(v -> servingNow.put(d, (int) v.number()));
        }
        jobMetrics = new JobMetrics(metrics.registry(), stats, domains, servingNow);
        stats.observe(jobMetrics);
        // what opening the registry repaired (quarantined versions, aliases that fell back, lost+found ...)
        for (AdapterRegistry.Damage d : servingRegistry.recovery()) {
            MoraEvent.StateRepaired e = new MoraEvent.StateRepaired(d.domain() == null ? "" : d.domain(), d.path().toString(),
                    d.repair().id(), d.reason());
            jobMetrics.on(e);
            progress.on(e);
        }
        system = ActorSystem.create(SpawnProtocol.create(), "morastream", cfg.raw());
        materializer = Materializer.matFromSystem(system);
        ActorRef<MoraEvent> events = spawn(Behaviors.receive(MoraEvent.class).onMessage(MoraEvent.class, e -> {
            jobMetrics.on(e);
            progress.on(e);
            return Behaviors.same();
        }).build(), "events", Props.empty());
        system.eventStream().tell(new EventStream.Subscribe<>(MoraEvent.class, events));

        ActorRef<AdapterRegistryActor.Command> registry = spawn(
                AdapterRegistryActor.create(new AdapterRegistry(cfg.registryDir(), cfg.registryKeep())), "registry",
                DispatcherSelector.fromConfig("morastream.actors.blocking-dispatcher"));
        ActorRef<EvaluatorActor.Command> evaluator = spawn(EvaluatorActor.create(model, tok, evaluatorSettings()), "evaluator",
                EvaluatorActor.DISPATCHER);
        supervisor = spawn(PromotionSupervisor.create(registry, evaluator, cfg::promotion, cfg.auditLog(), cfg.evaluator().timeout()),
                "supervisor", PromotionSupervisor.DISPATCHER);

        // ---- serving ----
        String baseName = cfg.baseModel().getFileName().toString();
        JobConfig.Http h = cfg.http();
        pool = new ServingPool(model, tok, baseName, servingRegistry, new ServingPool.Options(h.workers(), h.queue(), h.maxLoaded()),
                metrics.registry(), system);
        api = new HttpApi(pool, metrics, new HttpApi.Settings(h.adminToken().isBlank() ? null : h.adminToken(), h.maxBodyBytes(),
                h.maxTokens()).withApiKey(h.apiKey()).withMaxN(h.maxN()).withAllowedHosts(h.allowedHosts())
                .withRequestTimeout(h.requestTimeout()), this::moveAlias, cfg.auditLog(), ChatTemplate.forModel(cfg.baseModel()));
        if (!k.promotionsTopic().isBlank()) {
            Map<String, Object> p = clientProps();
            p.put(ProducerConfig.ACKS_CONFIG, "all");
            p.put(ProducerConfig.CLIENT_ID_CONFIG, "morastream-promotions");
            promotions = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
        }
        ActorRef<PromotionSupervisor.Event> listener = spawn(Behaviors.receive(PromotionSupervisor.Event.class)
                .onMessage(PromotionSupervisor.Promoted.class, p -> {
                    blocking.execute(() -> served(p));
                    return Behaviors.same();
                })
                .onMessage(PromotionSupervisor.Rejected.class, r -> Behaviors.same())
                .build(), "serving-listener", Props.empty());
        supervisor.tell(new PromotionSupervisor.Subscribe(listener));
        binding = api.bind(system, h.host(), h.port()).toCompletableFuture().get(30, TimeUnit.SECONDS);
        warm = pool.warmUp();

        // ---- trainers and the stream ----
        Map<String, Map<TopicPartition, ResumePoint>> rewind = new HashMap<>();
        for (String d : domains) {
            // damaged checkpoints are set aside here, before the trainer and the stream both read them
            TrainerCheckpoint.Recovery rec = TrainerCheckpoint.recover(cfg.checkpoints(d));
            for (TrainerCheckpoint.Skipped sk : rec.skipped()) {
                MoraEvent.StateRepaired e = new MoraEvent.StateRepaired(d, sk.dir().toString(), "quarantined", sk.reason());
                jobMetrics.on(e);
                progress.on(e);
            }
            if (rec.damaged()) {
                MoraEvent.StateRepaired e = new MoraEvent.StateRepaired(d, cfg.checkpoints(d).toString(),
                        rec.chosen().isPresent() ? "fallback" : "fresh_start",
                        rec.chosen().map(c -> "resuming from " + c.getFileName()).orElse("no usable checkpoint: a new adapter from scratch"));
                jobMetrics.on(e);
                progress.on(e);
                if (rec.chosen().isPresent()) {
                    rewind.put(d, ResumePoint.fromMetadata(TrainerCheckpoint.info(rec.chosen().get()).metadata()));
                }
            }
        }
        rewindGroup(rewind);
        for (int i = 0; i < domains.size(); i++) {
            String d = domains.get(i);
            JobConfig.Trainer t = cfg.trainer(d);
            Device device = gpus > 0 ? Device.gpu(i % gpus) : Device.cpu();
            LlamaModel on = models.computeIfAbsent(device, dev -> {
                NDManager m = NDManager.newBaseManager(dev);
                closeLast.add(m);
                return LlamaModel.load(cfg.baseModel(), m);
            });
            TrainerActor.Settings s = new TrainerActor.Settings(d, t.spec(), t.config(), cfg.checkpoints(d), t.checkpointEverySteps(),
                    t.checkpointEvery(), t.keepCheckpoints(), t.divergenceFactor(), t.divergenceWarmup(), t.backoffAfter(), t.backoff(),
                    t.sampleFacts(), t.sampleTexts(), t.ledger());
            trainers.put(d, spawn(TrainerActor.create(s, on, tok, registry, supervisor), "trainer-" + d, TrainerActor.DISPATCHER));
            progress.say("trainer " + d + ": " + t.spec().label() + " on " + device);
        }
        // a trainer that failed more often than its supervision allows stops for good: the job cannot
        // go on training that domain, so it stops (exit code 1 from bin/mora run) and a restart
        // resumes from the last checkpoint with fresh failure counters
        spawn(Behaviors.<Void>setup(ctx -> {
            trainers.values().forEach(ctx::watch);
            return Behaviors.<Void>receive(Void.class).onSignal(org.apache.pekko.actor.typed.Terminated.class, sig -> {
                dead.add(sig.getRef());
                if (!stopping) {
                    String why = "trainer " + sig.getRef().path().name() + " stopped after repeated failures";
                    progress.say(why + "; stopping the job (a restart resumes from the last checkpoint)");
                    failed.complete(why);
                }
                return Behaviors.same();
            }).build();
        }), "trainer-watch", Props.empty());
        deadLetters = DeadLetters.create(clientProps(), k.deadLetterTopic(), k.groupId());
        startStream();
        timers.scheduleWithFixedDelay(() -> jobMetrics.measureLag(admin, k.groupId(), k.topics()), 0,
                k.lagInterval().toMillis(), TimeUnit.MILLISECONDS);
        timers.scheduleWithFixedDelay(progress::status, 10, 10, TimeUnit.SECONDS);

        String url = "http://" + h.host() + ":" + port();
        progress.say("serving the OpenAI-compatible API on " + url + "/v1 (models: " + url + "/v1/models, metrics: " + url + "/metrics)");
        warm.whenComplete((v, e) -> progress.say(e == null ? "ready: " + url + "/health/ready" : "warm-up failed, not ready: " + e));

        if (cfg.demo().enabled()) {
            demo = new DemoFeed(cfg.demo(), bootstrap, k.client(), k.topics().get(0), cfg.stream().decoder().defaultDomain() != null
                    ? cfg.stream().decoder().defaultDomain() : domains.get(0), cfg.dataDir());
            DemoFeed.Fact f = demo.facts().get(0);
            progress.say("try: curl -s " + url + "/v1/completions -H 'Content-Type: application/json' -d '{\"model\": \""
                    + domains.get(0) + "\", \"prompt\": " + JSON.writeValueAsString(f.prompt()) + ", \"max_tokens\": 8, \"stop\": [\"\\n\"]}'"
                    + "   (the demo teaches:" + f.completion() + ")");
            demo.start();
        }
    }

    /** The configured client properties (security settings…) and the bootstrap servers, for any Kafka client. */
    private Map<String, Object> clientProps() {
        Map<String, Object> p = new HashMap<>(cfg.kafka().client());
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return p;
    }

    private EvaluatorActor.Settings evaluatorSettings() throws IOException {
        JobConfig.Evaluator e = cfg.evaluator();
        List<TaskSet.Item> tasks = new ArrayList<>();
        if (Files.isRegularFile(e.tasksFile())) {
            Map<String, Integer> perSet = new HashMap<>();
            for (TaskSet.Item i : TaskSet.load(e.tasksFile())) {
                if (perSet.merge(i.set(), 1, Integer::sum) <= e.tasksPerSet() || e.tasksPerSet() == 0) {
                    tasks.add(i);
                }
            }
        } else {
            log.warn("no downstream task file {}: candidates are judged on memorisation and retention only", e.tasksFile());
        }
        String heldout = "";
        if (Files.isRegularFile(e.heldoutFile())) {
            heldout = Files.readString(e.heldoutFile(), StandardCharsets.UTF_8);
            if (e.heldoutChars() > 0 && heldout.length() > e.heldoutChars()) {
                heldout = heldout.substring(0, e.heldoutChars());
            }
        } else {
            log.warn("no held-out file {}: retention is not measured", e.heldoutFile());
        }
        return new EvaluatorActor.Settings(tasks, heldout, Math.min(e.window(), model.config().maxPositionEmbeddings()), e.maxNewTokens());
    }

    private void createTopics() throws Exception {
        JobConfig.Kafka k = cfg.kafka();
        Set<String> existing = admin.listTopics().names().get(30, TimeUnit.SECONDS);
        List<NewTopic> create = new ArrayList<>();
        for (String t : k.topics()) {
            if (!existing.contains(t)) {
                create.add(new NewTopic(t, Optional.of(k.partitions()), Optional.empty()));
            }
        }
        if (!existing.contains(k.deadLetterTopic())) {
            create.add(new NewTopic(k.deadLetterTopic(), Optional.of(1), Optional.empty()));
        }
        if (!k.promotionsTopic().isBlank() && !existing.contains(k.promotionsTopic())) {
            create.add(new NewTopic(k.promotionsTopic(), Optional.of(1), Optional.empty())
                    .configs(Map.of(TopicConfig.CLEANUP_POLICY_CONFIG, TopicConfig.CLEANUP_POLICY_COMPACT)));
        }
        if (!create.isEmpty()) {
            admin.createTopics(create).all().get(30, TimeUnit.SECONDS);
            progress.say("created topics " + create.stream().map(NewTopic::name).toList());
        }
    }

    /**
     * A domain that fell back to an older checkpoint must retrain the records after that one's
     * offsets, but the group's committed position (moved on by the damaged newer checkpoint) is
     * further: the stream resumes at the later of the two. Moves the group's commit back to the
     * fallback's offsets (with no per-domain metadata, so every other domain resumes from its own
     * checkpoint). Possible only while the group has no member (Kafka refuses it otherwise): then the
     * records in between are not retrained, and the log says so.
     */
    private void rewindGroup(Map<String, Map<TopicPartition, ResumePoint>> rewind) {
        if (rewind.isEmpty()) {
            return;
        }
        String group = cfg.kafka().groupId();
        try {
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                    .get(30, TimeUnit.SECONDS);
            Map<TopicPartition, Long> target = new HashMap<>();
            rewind.values().forEach(points -> points.forEach((tp, p) -> target.merge(tp, p.offset(), Math::min)));
            Map<TopicPartition, OffsetAndMetadata> back = new HashMap<>();
            target.forEach((tp, o) -> {
                OffsetAndMetadata c = committed.get(tp);
                if (c != null && c.offset() > o) {
                    back.put(tp, new OffsetAndMetadata(o));
                }
            });
            if (!back.isEmpty()) {
                admin.alterConsumerGroupOffsets(group, back).all().get(30, TimeUnit.SECONDS);
                progress.say("checkpoint fallback: group " + group + " rewound to " + back.entrySet().stream()
                        .map(e -> e.getKey() + "=" + e.getValue().offset()).toList() + " to retrain what the damaged checkpoint held");
            }
        } catch (Exception e) {
            log.error("checkpoint fallback of {}: could not rewind group {} ({}); the records between the fallback checkpoint and the "
                    + "group's committed offsets will NOT be retrained", rewind.keySet(), group, rootCause(e));
        }
    }

    private <T> ActorRef<T> spawn(Behavior<T> behavior, String name, Props props) throws Exception {
        CompletionStage<ActorRef<T>> ref = AskPattern.ask(system, r -> new SpawnProtocol.Spawn<>(behavior, name, props, r), ASK,
                system.scheduler());
        return ref.toCompletableFuture().get(ASK.toSeconds(), TimeUnit.SECONDS);
    }

    // ---- the stream, restarted from the checkpoints whenever it fails ----

    private synchronized void startStream() {
        if (stopping) {
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
        ReplayMixer replay = s.replay().fraction() > 0 ? new ReplayMixer(s.replay(), tok, s.seqLen(), rehearsalRows()) : null;
        TrainingStream.Settings ts = new TrainingStream.Settings(bootstrap, cfg.kafka().client(), cfg.kafka().groupId(),
                Set.copyOf(cfg.kafka().topics()), s.decoder(), s.seqLen(), s.batchSize(), s.decodeParallelism(), s.idleFlush());
        Consumer.DrainingControl<Done> c = TrainingStream.run(system, materializer, ts, tok, deadLetters, sink, resume, stats, replay);
        control = c;
        progress.say("stream: reading " + cfg.kafka().topics() + " as group " + cfg.kafka().groupId()
                + (resume.values().stream().allMatch(Map::isEmpty) ? "" : ", resuming from the checkpoints' offsets " + resume));
        c.streamCompletion().whenComplete((done, err) -> {
            if (stopping) {
                return;
            }
            log.warn("stream stopped{}; restarting in {} from the trainers' checkpoints",
                    err == null ? "" : ": " + rootCause(err), s.restartBackoff());
            progress.say("stream stopped (" + (err == null ? "completed" : rootCause(err)) + "); restarting from the checkpoints");
            jobMetrics.streamRestarted();
            timers.schedule(this::startStream, s.restartBackoff().toMillis(), TimeUnit.MILLISECONDS);
        });
    }

    /**
     * The pseudo-rehearsal rows (computed once per job: the base's answers come from the cache in
     * {@code <data-dir>/rehearsal} or are generated there); none when the rehearsal share is 0.
     */
    private PseudoRehearsal.Rows rehearsalRows() {
        JobConfig.Stream s = cfg.stream();
        if (rehearsalRows == null) {
            rehearsalRows = new PseudoRehearsal.Rows(List.of(), List.of());
            if (s.replay().rehearsalShare() > 0) {
                try {
                    List<String> prompts = rehearsalPrompts();
                    PseudoRehearsal.Loaded l = PseudoRehearsal.loadOrGenerate(cfg.dataDir().resolve("rehearsal"),
                            PseudoRehearsal.identity(cfg.baseModel()), prompts, s.rehearsal().maxNewTokens(), model, tok, progress::say);
                    rehearsalRows = PseudoRehearsal.rows(l.pairs(), tok, s.seqLen(), s.replay().seed());
                    progress.say("pseudo-rehearsal: " + l.pairs().size() + " prompts answered by the base ("
                            + (l.generated() ? "generated into " : "cached in ") + l.file() + "), " + rehearsalRows.tokens().size()
                            + " rows, replayed for " + Math.round(s.replay().rehearsalShare() * 100) + "% of the replayed rows");
                } catch (IOException e) {
                    throw new UncheckedIOException("pseudo-rehearsal: cannot read its sources or write its cache", e);
                }
            }
        }
        return rehearsalRows;
    }

    private List<String> rehearsalPrompts() throws IOException {
        JobConfig.Rehearsal r = cfg.stream().rehearsal();
        List<String> prompts = new ArrayList<>();
        if (r.baseSources()) {
            JobConfig.Evaluator e = cfg.evaluator();
            if (Files.isRegularFile(e.tasksFile())) {
                TaskSet.load(e.tasksFile()).forEach(i -> prompts.add(i.prompt()));
            }
            if (Files.isRegularFile(e.heldoutFile())) {
                String text = Files.readString(e.heldoutFile(), StandardCharsets.UTF_8);
                // lines after the part retention is scored on, so that retention stays held out
                int from = e.heldoutChars() > 0 ? Math.min(text.length(), e.heldoutChars()) : text.length() / 2;
                prompts.addAll(PseudoRehearsal.linePrompts(text.substring(from), r.heldoutLines()));
            }
        }
        for (Path f : r.files()) {
            List<String> lines = Files.readAllLines(f, StandardCharsets.UTF_8);
            for (int i = 0; i < lines.size(); i++) {
                String l = lines.get(i).strip();
                if (l.isEmpty()) {
                    continue;
                }
                com.fasterxml.jackson.databind.JsonNode n;
                try {
                    n = new com.fasterxml.jackson.databind.ObjectMapper().readTree(l);
                } catch (IOException ex) {
                    throw new IllegalArgumentException("rehearsal file " + f + ":" + (i + 1) + ": not JSON: " + ex.getMessage());
                }
                if (n == null || !n.path("prompt").isTextual() || n.get("prompt").asText().isBlank()) {
                    throw new IllegalArgumentException("rehearsal file " + f + ":" + (i + 1) + ": needs a non-empty string field 'prompt'");
                }
                prompts.add(n.get("prompt").asText());
            }
        }
        return prompts;
    }

    private static String rootCause(Throwable t) {
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t.getMessage() == null ? t.toString() : t.getMessage();
    }

    // ---- serving follows the supervisor ----

    /** A promotion or rollback: serve it, and tell other nodes on the promotions topic. */
    private void served(PromotionSupervisor.Promoted p) {
        try {
            pool.swap(p.version());
        } catch (RuntimeException e) {
            log.error("serving could not switch to {}: {}", p.version(), e.toString());
            return;
        }
        if (promotions != null) {
            ObjectNode o = JSON.createObjectNode();
            o.put("domain", p.version().domain());
            o.put("version", p.version().toString());
            o.put("previous", p.previous().map(AdapterVersion::toString).orElse(null));
            o.put("cause", p.decision().id());
            o.put("time", java.time.Instant.now().toString());
            p.reasons().forEach(o.putArray("reasons")::add);
            long gen = promotionGeneration.merge(p.version().domain(), 1L, Long::sum);
            publishPromotion(new ProducerRecord<>(cfg.kafka().promotionsTopic(), p.version().domain(), o.toString()), p.version(), gen, 1);
        }
    }

    private final Map<String, Long> promotionGeneration = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * Sends a promotion to the promotions topic; a send that fails is retried with backoff (1 s,
     * doubling, at most 30 s) until it lands, unless a newer promotion of the domain was sent since
     * (the compacted topic keeps the last value per domain: an older one must not overtake it).
     */
    private void publishPromotion(ProducerRecord<String, String> rec, AdapterVersion v, long gen, int attempt) {
        promotions.send(rec, (md, e) -> {
            if (e == null) {
                if (attempt > 1) {
                    log.info("promotion {} published to {} after {} attempts", v, rec.topic(), attempt);
                }
                return;
            }
            io.micrometer.core.instrument.Counter.builder("mora.promotions.publish.failures")
                    .description("Failed sends of a promotion to the promotions topic (retried)").tag("domain", v.domain())
                    .register(metrics.registry()).increment();
            if (promotionGeneration.getOrDefault(v.domain(), 0L) != gen) {
                log.warn("promotion {} not published to {} ({}); a newer promotion of {} replaces it", v, rec.topic(), e.toString(),
                        v.domain());
                return;
            }
            long delay = Math.min(30_000L, 1000L << Math.min(5, attempt - 1));
            if (stopping) {
                log.error("promotion {} NOT published to {} ({}): the job is stopping; the registry alias holds it", v, rec.topic(),
                        e.toString());
                return;
            }
            log.warn("promotion {} not published to {} (attempt {}: {}); retrying in {} ms", v, rec.topic(), attempt, e.toString(), delay);
            try {
                timers.schedule(() -> publishPromotion(rec, v, gen, attempt + 1), delay, TimeUnit.MILLISECONDS);
            } catch (java.util.concurrent.RejectedExecutionException stopped) {
                log.error("promotion {} NOT published to {}: the job is stopping", v, rec.topic());
            }
        });
    }

    /** The HTTP admin endpoints go through the supervisor (audit log, listeners, promotions topic). */
    private CompletionStage<Void> moveAlias(AdapterVersion target, String cause) {
        String why = cause + " via the HTTP admin API";
        return AskPattern.<PromotionSupervisor.Command, AdapterVersion>askWithStatus(supervisor,
                        r -> "rollback".equals(cause) ? new PromotionSupervisor.Rollback(target, why, r)
                                : new PromotionSupervisor.Promote(target, why, r), ASK, system.scheduler())
                .thenAcceptAsync(v -> pool.swap(v), blocking);
    }

    // ---- accessors ----

    public int port() {
        return binding.localAddress().getPort();
    }

    public String bootstrapServers() {
        return bootstrap;
    }

    public ServingPool pool() {
        return pool;
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
        return warm;
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
        if (demo != null) {
            demo.close();
        }
        Consumer.DrainingControl<Done> c = control;
        if (c != null) {
            try {
                c.drainAndShutdown(system.executionContext()).toCompletableFuture()
                        .get(cfg.stream().trainerTimeout().toSeconds() + 30, TimeUnit.SECONDS);
            } catch (Exception e) {
                log.warn("stream drain: {}", e.toString());
            }
        }
        Map<String, Map<TopicPartition, ResumePoint>> finalPoints = new HashMap<>();
        for (Map.Entry<String, ActorRef<TrainerActor.Command>> e : trainers.entrySet()) {
            if (dead.contains(e.getValue())) {
                continue; // its last checkpoint is all there is
            }
            try {
                Optional<Path> ckpt = AskPattern.<TrainerActor.Command, Optional<Path>>askWithStatus(e.getValue(),
                        TrainerActor.Stop::new, Duration.ofSeconds(120), system.scheduler()).toCompletableFuture().get(130, TimeUnit.SECONDS);
                ckpt.ifPresent(p -> progress.say("trainer " + e.getKey() + ": final checkpoint " + p.getFileName()));
                finalPoints.put(e.getKey(), TrainerActor.resumePoints(cfg.checkpoints(e.getKey())));
            } catch (Exception ex) {
                log.warn("trainer {}: no final checkpoint: {}", e.getKey(), ex.toString());
            }
        }
        commit(finalPoints);
        if (binding != null) {
            try {
                binding.terminate(Duration.ofSeconds(10)).toCompletableFuture().get(15, TimeUnit.SECONDS);
            } catch (Exception e) {
                log.warn("HTTP unbind: {}", e.toString());
            }
        }
        quietly(api);
        quietly(pool);
        if (system != null) {
            system.terminate();
            system.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
        }
        blocking.shutdownNow();
        quietly(promotions == null ? null : () -> promotions.close(Duration.ofSeconds(5)));
        quietly(deadLetters);
        quietly(admin == null ? null : () -> admin.close(Duration.ofSeconds(5)));
        quietly(metrics);
        quietly(tok);
        models.values().forEach(MoraJob::quietly);
        quietly(root);
        quietly(kafka);
        for (int i = closeLast.size() - 1; i >= 0; i--) {
            quietly(closeLast.get(i)); // releases the data-directory lock
        }
        progress.say("stopped");
    }

    /** Commits the offsets the final checkpoints hold (the group has no member now; the stream committed up to its last batch). */
    private void commit(Map<String, Map<TopicPartition, ResumePoint>> points) {
        if (admin == null || points.isEmpty() || points.size() < trainers.size()) {
            return;
        }
        Map<TopicPartition, Long> min = new HashMap<>();
        Map<TopicPartition, Integer> count = new HashMap<>();
        points.values().forEach(m -> m.forEach((tp, p) -> {
            min.merge(tp, p.offset(), Math::min);
            count.merge(tp, 1, Integer::sum);
        }));
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        min.forEach((tp, o) -> {
            if (count.get(tp) == points.size()) {
                offsets.put(tp, new OffsetAndMetadata(o));
            }
        });
        if (offsets.isEmpty()) {
            return;
        }
        try {
            admin.alterConsumerGroupOffsets(cfg.kafka().groupId(), offsets).all().get(30, TimeUnit.SECONDS);
            progress.say("committed offsets " + offsets.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue().offset()).toList());
        } catch (Exception e) {
            // the checkpoints hold them: the next start seeks there anyway
            log.warn("final offset commit failed ({}); the next start resumes from the checkpoints", rootCause(e));
        }
    }

    private static void quietly(AutoCloseable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            log.warn("while stopping: {}", e.toString());
        }
    }

    /** What a person watching the console sees: one line per event that matters, and a status line every 10 s. */
    final class Progress {
        private final DateTimeFormatter time = DateTimeFormatter.ofPattern("HH:mm:ss");
        private final Map<String, double[]> loss = new java.util.concurrent.ConcurrentHashMap<>(); // domain -> {step, progressive}

        void say(String line) {
            System.out.println(LocalTime.now().format(time) + " " + line);
            System.out.flush();
        }

        void on(MoraEvent e) {
            if (e instanceof MoraEvent.Stepped s) {
                loss.put(s.domain(), new double[] {s.step(), s.lossBefore()});
            } else if (e instanceof MoraEvent.TrainFailed f) {
                say("trainer " + f.domain() + ": " + f.message() + " -> restarting from its last checkpoint");
            } else if (e instanceof MoraEvent.Checkpointed c) {
                say(String.format(Locale.ROOT, "trainer %s: checkpoint at step %d (%.0f ms)", c.domain(), c.step(), c.nanos() / 1e6));
            } else if (e instanceof MoraEvent.Evaluated v) {
                var c = v.evaluation().candidate();
                var sv = v.evaluation().serving();
                var base = v.evaluation().base();
                boolean facts = Double.isFinite(c.memorizationCharAcc());
                say(String.format(Locale.ROOT, "evaluator: %s memorisation %s %.2f vs %s %.2f, worst downstream drop vs base %.3f%s,"
                                + " KL to base %.4f, retention loss %.3f vs base %.3f (%.1f s)",
                        v.candidate(), facts ? "char_acc" : "loss", facts ? c.memorizationCharAcc() : c.memorizationLoss(),
                        v.serving().map(Object::toString).orElse("base"), facts ? sv.memorizationCharAcc() : sv.memorizationLoss(),
                        c.worstDownstreamDrop(base), worstSet(c, base), c.klToBase(), c.retentionLoss(), base.retentionLoss(),
                        v.nanos() / 1e9));
            } else if (e instanceof MoraEvent.Decided d) {
                switch (d.decision()) {
                    case PROMOTED -> say("PROMOTED " + d.version() + ": now serving it as model '" + d.domain() + "'");
                    case PROMOTED_BY_ADMIN, ROLLED_BACK -> say(d.decision().id() + ": " + d.domain() + " -> " + d.version() + " ("
                            + String.join("; ", d.reasons()) + ")");
                    default -> say(d.decision().id() + " " + d.version() + ": " + String.join("; ", d.reasons()));
                }
            } else if (e instanceof MoraEvent.StateRepaired r) {
                say("DAMAGED STATE " + r.action() + ": " + r.file() + " (" + r.reason() + ")");
            } else if (e instanceof MoraEvent.AuditFailed a) {
                say("audit log not writable (" + a.error() + "): " + a.pending() + " decision(s) kept, retrying");
            }
        }

        /** " (set)" naming the set of the worst drop, or "" when nothing dropped. */
        private static String worstSet(dev.morastream.actors.supervisor.Scores c, dev.morastream.actors.supervisor.Scores base) {
            String worst = null;
            double drop = 0;
            for (var e : base.downstream().entrySet()) {
                double d = e.getValue() - c.downstream().getOrDefault(e.getKey(), 0.0);
                if (d > drop) {
                    drop = d;
                    worst = e.getKey();
                }
            }
            return worst == null ? "" : " (" + worst + ")";
        }

        void status() {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "records: %d consumed, %d trained, %d dead-lettered",
                    stats.decoded.get(), stats.recordsTrained.get(), stats.rejected.get()));
            loss.forEach((d, v) -> sb.append(String.format(Locale.ROOT, " | %s: step %d, loss %.3f", d, (long) v[0], v[1])));
            for (String d : trainers.keySet()) {
                sb.append(" | serving ").append(pool.serving(d).map(Object::toString).orElse(d + ": base"));
            }
            say(sb.toString());
        }
    }
}
