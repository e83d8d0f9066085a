package dev.morastream.ops.run;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import com.typesafe.config.ConfigValue;
import dev.morastream.actors.supervisor.PromotionPolicy;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.train.LrSchedule;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.actors.cluster.ClusterSettings;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.replay.ReplayMixer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * The settings of {@code bin/mora run}, read from the {@code morastream} section of the HOCON
 * configuration (see {@code application.conf}, where every key is documented). Invalid values fail
 * at start with the key's name.
 */
public record JobConfig(Config raw, Path dataDir, Path baseModel, Kafka kafka, Stream stream, Trainer trainer,
                        Evaluator evaluator, PromotionPolicy promotion, int registryKeep, Http http, Demo demo,
                        Map<String, Trainer> domainTrainers, Map<String, PromotionPolicy> domainPromotions, ClusterSettings cluster) {
    /** Trainer keys a domain may override in {@code morastream.stream.domain-settings.<domain>}. */
    public static final List<String> DOMAIN_TRAINER_KEYS = List.of("method", "variant", "rank", "alpha", "dropout", "target-modules",
            "rotation-threshold", "seed", "lr", "schedule", "warmup-steps", "total-steps", "min-lr-ratio", "weight-decay",
            "clip-norm", "grad-accum", "completion-only", "checkpoint-every-steps", "checkpoint-every", "keep-checkpoints",
            "kl-weight", "kl-on-prompts");
    /** Promotion keys a domain may override in {@code domain-settings.<domain>.promotion}. */
    public static final List<String> DOMAIN_PROMOTION_KEYS = List.of("memorization-margin", "downstream-tolerance", "retention-tolerance",
            "max-kl");

    public JobConfig {
        domainTrainers = Map.copyOf(domainTrainers);
        domainPromotions = Map.copyOf(domainPromotions);
    }

    /** The trainer settings of {@code domain}: {@link #trainer} with the domain's overrides. */
    public Trainer trainer(String domain) {
        return domainTrainers.getOrDefault(domain, trainer);
    }

    /** The promotion gate of {@code domain}: {@link #promotion} with the domain's overrides. */
    public PromotionPolicy promotion(String domain) {
        return domainPromotions.getOrDefault(domain, promotion);
    }

    public record Kafka(String bootstrapServers, Map<String, String> client, String groupId, List<String> topics,
                        boolean createTopics, int partitions, String deadLetterTopic, String promotionsTopic, String stateTopic,
                        Duration lagInterval) {
        /** Whether the job starts its own broker. */
        public boolean embedded() {
            return bootstrapServers.isBlank();
        }
    }

    public record Stream(RecordDecoder.Config decoder, int seqLen, int batchSize, int decodeParallelism, Duration idleFlush,
                         Duration trainerTimeout, Duration restartBackoff, ReplayMixer.Config replay, Rehearsal rehearsal) {}

    /**
     * Pseudo-rehearsal sources: prompts answered once by the frozen base and replayed for {@code
     * stream.replay.rehearsal-share} of the replayed rows.
     *
     * @param baseSources whether the evaluator's task prompts and lines of the held-out text (after the
     *     part retention is scored on) are sources
     * @param heldoutLines lines of the held-out text used as prompts
     * @param files more sources: JSONL files of {@code {"prompt": ...}}
     * @param maxNewTokens the base's answer budget
     */
    public record Rehearsal(boolean baseSources, int heldoutLines, List<Path> files, int maxNewTokens) {
        public Rehearsal {
            files = List.copyOf(files);
        }
    }

    public record Trainer(AdapterSpec spec, TrainerConfig config, int checkpointEverySteps, Duration checkpointEvery,
                          int keepCheckpoints, double divergenceFactor, int divergenceWarmup, int backoffAfter, double backoff,
                          boolean ledger, int sampleFacts, int sampleTexts) {}

    public record Evaluator(Path tasksFile, int tasksPerSet, Path heldoutFile, int heldoutChars, int window, int maxNewTokens,
                            Duration timeout) {}

    public record Http(String host, int port, String adminToken, long maxBodyBytes, int maxTokens, int workers, int queue,
                       int maxLoaded, String apiKey, int maxN, List<String> allowedHosts, Duration requestTimeout) {}

    public record Demo(boolean enabled, long seed, int countries, int people, double rate, int repeats) {}

    /**
     * Loads the configuration: {@code overrides} (command-line options), then system properties,
     * then {@code CONFIG_FORCE_} environment variables, then {@code file} (when not null), then
     * {@code application.conf} and the modules' {@code reference.conf}.
     *
     * @param home the installation directory (the shipped model lives under it)
     */
    public static JobConfig load(Path file, Map<String, Object> overrides, Path home) {
        Config fromFile = ConfigFactory.empty();
        if (file != null) {
            if (!Files.isRegularFile(file)) {
                throw new IllegalArgumentException("configuration file " + file + " does not exist");
            }
            fromFile = ConfigFactory.parseFile(file.toFile(), ConfigParseOptions.defaults().setAllowMissing(false));
        }
        Config c = ConfigFactory.parseMap(overrides, "command-line options")
                .withFallback(ConfigFactory.systemProperties())
                .withFallback(ConfigFactory.systemEnvironmentOverrides())
                .withFallback(fromFile)
                .withFallback(ConfigFactory.parseResourcesAnySyntax("application"))
                .withFallback(ConfigFactory.defaultReference())
                .resolve();
        return from(c, home);
    }

    /** Reads the {@code morastream} section of a resolved configuration. */
    public static JobConfig from(Config c, Path home) {
        try {
            return parse(c, home);
        } catch (ConfigException e) {
            throw new IllegalArgumentException("configuration: " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("configuration: " + e.getMessage(), e);
        }
    }

    /**
     * Sections under {@code morastream} whose keys are free-form (Kafka client properties, Pekko
     * dispatchers) or checked by their own reader (per-domain settings).
     */
    static final List<String> FREE_FORM = List.of("morastream.kafka.client", "morastream.stream.domain-settings", "morastream.actors.trainer-dispatcher",
            "morastream.actors.blocking-dispatcher", "morastream.streams.decode-dispatcher", "morastream.serving.dispatcher");

    /**
     * Fails on a key under {@code morastream} that the shipped configuration ({@code application.conf}
     * and the modules' {@code reference.conf}) does not have: a typo would otherwise be ignored in
     * silence. The message names the key and the nearest known one.
     */
    public static void checkKnownKeys(Config c) {
        if (!c.hasPath("morastream")) {
            return;
        }
        Config known = ConfigFactory.parseResourcesAnySyntax("application").withFallback(ConfigFactory.defaultReference())
                .resolve();
        java.util.Set<String> knownKeys = new java.util.TreeSet<>();
        known.getConfig("morastream").entrySet().forEach(e -> knownKeys.add("morastream." + e.getKey()));
        for (Map.Entry<String, ConfigValue> e : c.getConfig("morastream").entrySet()) {
            String key = "morastream." + e.getKey();
            if (knownKeys.contains(key) || FREE_FORM.stream().anyMatch(f -> key.startsWith(f + "."))) {
                continue;
            }
            refuseRestarts(key);
            String nearest = null;
            int best = Integer.MAX_VALUE;
            for (String k : knownKeys) {
                int d = distance(key, k);
                if (d < best) {
                    best = d;
                    nearest = k;
                }
            }
            String origin = e.getValue().origin() == null ? "" : " (" + e.getValue().origin().description() + ")";
            throw new IllegalArgumentException("configuration: unknown key '" + key + "'" + origin
                    + (nearest == null ? "" : "; did you mean '" + nearest + "'?"));
        }
    }

    /**
     * ReMoRA/ReLoRA restarts merge the adapter into the base weights, which the streaming trainer
     * shares with the other domains and with serving (a served version is base + adapter): refused
     * with a message that says so and what to use instead.
     */
    static void refuseRestarts(String key) {
        String leaf = key.substring(key.lastIndexOf('.') + 1).toLowerCase(java.util.Locale.ROOT);
        if (leaf.contains("remora") || leaf.contains("relora") || leaf.startsWith("restart-every")) {
            throw new IllegalArgumentException("configuration: '" + key + "': ReMoRA/ReLoRA restarts are not supported by the"
                    + " streaming trainer (they merge into the base weights that every domain and serving share; a served version"
                    + " is base + adapter). Train them offline: bin/mora train --remora-every N --out DIR, then serve --model DIR/model"
                    + " --adapter DIR/adapter");
        }
    }

    /** Levenshtein distance. */
    static int distance(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int sub = prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
                cur[j] = Math.min(sub, Math.min(prev[j] + 1, cur[j - 1] + 1));
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }

    /**
     * The Pekko configuration of the job's actor system: {@link #raw} with the cluster settings of
     * {@link #cluster} on top (nothing changes when the cluster is off).
     */
    public Config actorSystemConfig(String systemName) {
        return cluster.pekkoConfig(systemName).withFallback(raw);
    }

    private static JobConfig parse(Config c, Path home) {
        checkKnownKeys(c);
        Config m = c.getConfig("morastream");
        Path dataDir = Path.of(m.getString("data-dir")).toAbsolutePath().normalize();
        String base = m.getString("base-model");
        Path baseModel = (base.isBlank() ? home.resolve("base-models").resolve("tiny") : Path.of(base)).toAbsolutePath().normalize();

        Config k = m.getConfig("kafka");
        Map<String, String> client = new LinkedHashMap<>();
        for (Map.Entry<String, ConfigValue> e : k.getConfig("client").entrySet()) {
            client.put(e.getKey().replace("\"", ""), String.valueOf(e.getValue().unwrapped()));
        }
        List<String> topics = k.getStringList("topics");
        if (topics.isEmpty()) {
            throw new IllegalArgumentException("morastream.kafka.topics is empty: nothing to read");
        }
        Kafka kafka = new Kafka(k.getString("bootstrap-servers").trim(), client, k.getString("group-id"), topics,
                k.getBoolean("create-topics"), positive(k, "partitions"), k.getString("dead-letter-topic"),
                k.getString("promotions-topic").trim(), k.getString("state-topic").trim(), k.getDuration("lag-interval"));

        Config s = m.getConfig("stream");
        String defaultDomain = s.getString("default-domain").trim();
        RecordDecoder.Config decoder = new RecordDecoder.Config(new LinkedHashSet<>(s.getStringList("domains")),
                defaultDomain.isEmpty() ? null : defaultDomain, positive(s, "max-record-bytes"));
        Config r = s.getConfig("replay");
        ReplayMixer.Config replay = new ReplayMixer.Config(r.getDouble("fraction"), positive(r, "capacity"),
                r.getDouble("general-share"), r.getInt("general-docs"), r.getLong("seed"), r.getDouble("rehearsal-share"));
        Config rh = r.getConfig("rehearsal");
        Rehearsal rehearsal = new Rehearsal(rh.getBoolean("base-sources"), rh.getInt("heldout-lines"),
                rh.getStringList("files").stream().map(Path::of).toList(), positive(rh, "max-new-tokens"));
        Duration idle = s.getDuration("idle-flush");
        Stream stream = new Stream(decoder, positive(s, "seq-len"), positive(s, "batch-size"), positive(s, "decode-parallelism"),
                idle.isZero() ? null : idle, s.getDuration("trainer-timeout"), s.getDuration("restart-backoff"), replay, rehearsal);

        Trainer trainer = trainer(m.getConfig("trainer"), "morastream.trainer");
        Config e = m.getConfig("evaluator");
        Path tasks = e.getString("tasks-file").isBlank() ? baseModel.resolve("eval").resolve("tasks.jsonl") : Path.of(e.getString("tasks-file"));
        Path heldout = e.getString("heldout-file").isBlank() ? baseModel.resolve("eval").resolve("heldout.txt")
                : Path.of(e.getString("heldout-file"));
        Evaluator evaluator = new Evaluator(tasks, e.getInt("tasks-per-set"), heldout, e.getInt("heldout-chars"), positive(e, "window"),
                positive(e, "max-new-tokens"), e.getDuration("timeout"));

        PromotionPolicy policy = promotion(m.getConfig("promotion"));

        // per-domain overrides of trainer and promotion keys
        Map<String, Trainer> domainTrainers = new LinkedHashMap<>();
        Map<String, PromotionPolicy> domainPromotions = new LinkedHashMap<>();
        Config ds = s.hasPath("domain-settings") ? s.getConfig("domain-settings") : ConfigFactory.empty();
        for (String domain : ds.root().keySet()) {
            String at = "morastream.stream.domain-settings." + domain;
            if (!decoder.domains().contains(domain)) {
                throw new IllegalArgumentException(at + ": '" + domain + "' is not one of morastream.stream.domains "
                        + decoder.domains());
            }
            if (ds.root().get(domain).valueType() != com.typesafe.config.ConfigValueType.OBJECT) {
                throw new IllegalArgumentException(at + " must be an object of trainer keys, e.g. { rank = 64, lr = 3e-4 }");
            }
            Config o = ds.getConfig("\"" + domain + "\"");
            for (String key : o.root().keySet()) {
                if (key.equals("promotion")) {
                    Config po = o.getConfig("promotion");
                    for (String pk : po.root().keySet()) {
                        if (!DOMAIN_PROMOTION_KEYS.contains(pk)) {
                            throw new IllegalArgumentException(at + ".promotion." + pk + ": unknown promotion key (known: "
                                    + String.join(", ", DOMAIN_PROMOTION_KEYS) + ")");
                        }
                    }
                    domainPromotions.put(domain, promotion(po.withFallback(m.getConfig("promotion"))));
                } else if (!DOMAIN_TRAINER_KEYS.contains(key)) {
                    refuseRestarts(at + "." + key);
                    throw new IllegalArgumentException(at + "." + key + ": not a key a domain can override (trainer keys: "
                            + String.join(", ", DOMAIN_TRAINER_KEYS) + "; and promotion { "
                            + String.join(", ", DOMAIN_PROMOTION_KEYS) + " })");
                }
            }
            Config tk = o.withoutPath("promotion");
            if (!tk.isEmpty()) {
                domainTrainers.put(domain, trainer(tk.withFallback(m.getConfig("trainer")), at));
            }
        }

        Config h = m.getConfig("http");
        int port = h.getInt("port");
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("morastream.http.port must be 0..65535, got " + port);
        }
        Http http = new Http(h.getString("host"), port, h.getString("admin-token"), h.getLong("max-body-bytes"),
                positive(h, "max-tokens"), positive(h, "workers"), positive(h, "queue"), positive(h, "max-loaded"),
                h.getString("api-key"), positive(h, "max-n"), h.getStringList("allowed-hosts"), h.getDuration("request-timeout"));
        if (http.requestTimeout().isZero() || http.requestTimeout().isNegative()) {
            throw new IllegalArgumentException("morastream.http.request-timeout must be positive");
        }

        Config d = m.getConfig("demo");
        Demo demo = new Demo(d.getBoolean("enabled"), d.getLong("seed"), positive(d, "countries"), positive(d, "people"),
                d.getDouble("rate"), d.getInt("repeats"));
        if (demo.rate() <= 0) {
            throw new IllegalArgumentException("morastream.demo.rate must be positive");
        }
        Config cl = m.getConfig("cluster");
        ClusterSettings cluster;
        try {
            cluster = new ClusterSettings(cl.getString("host"), cl.getInt("port"), cl.getStringList("seed-nodes"),
                    new java.util.LinkedHashSet<>(cl.getStringList("roles")));
        } catch (IllegalArgumentException bad) {
            throw new IllegalArgumentException("morastream.cluster: " + bad.getMessage(), bad);
        }
        if (cluster.enabled() && (kafka.promotionsTopic().isBlank() || kafka.stateTopic().isBlank())) {
            throw new IllegalArgumentException("morastream.cluster is on: morastream.kafka.promotions-topic and state-topic must not be"
                    + " empty (serving nodes follow promotions from the one and fetch versions from the other)");
        }
        return new JobConfig(c, dataDir, baseModel, kafka, stream, trainer, evaluator, policy, positive(m.getConfig("registry"), "keep"),
                http, demo, domainTrainers, domainPromotions, cluster);
    }

    /** Trainer settings from a {@code trainer} section ({@code at} names it in errors). */
    private static Trainer trainer(Config t, String at) {
        try {
            AdapterSpec.Method method = parse(at + ".method", () -> AdapterSpec.Method.parse(t.getString("method")));
            String variant = t.getString("variant").trim();
            MoraVariant moraVariant = method != AdapterSpec.Method.MORA || variant.equalsIgnoreCase("auto") ? null
                    : parse(at + ".variant", () -> MoraVariant.parse(variant));
            LrSchedule.Kind schedule = parse(at + ".schedule", () -> LrSchedule.Kind.parse(t.getString("schedule")));
            AdapterSpec spec = new AdapterSpec(method, moraVariant,
                    t.getInt("rank"), t.getDouble("alpha"), t.getDouble("dropout"), t.getStringList("target-modules"),
                    positive(t, "rotation-threshold"), t.getLong("seed"));
            TrainerConfig tc = new TrainerConfig(t.getDouble("lr"), schedule,
                    t.getInt("warmup-steps"), positive(t, "total-steps"), t.getDouble("min-lr-ratio"), t.getDouble("weight-decay"),
                    t.getDouble("clip-norm"), positive(t, "grad-accum"), t.getBoolean("completion-only"), true, 0, 0,
                    t.getDouble("kl-weight"), t.getBoolean("kl-on-prompts"));
            Config dv = t.getConfig("divergence");
            Duration every = t.getDuration("checkpoint-every");
            return new Trainer(spec, tc, positive(t, "checkpoint-every-steps"), every.isZero() ? null : every,
                    t.getInt("keep-checkpoints"), dv.getDouble("factor"), dv.getInt("warmup"), positive(dv, "backoff-after"),
                    dv.getDouble("backoff"), t.getBoolean("ledger"), t.getInt("sample-facts"), t.getInt("sample-texts"));
        } catch (ConfigException | IllegalArgumentException e) {
            if (at.equals("morastream.trainer") || e.getMessage().startsWith(at)) {
                throw e;
            }
            throw new IllegalArgumentException(at + ": " + e.getMessage(), e);
        }
    }

    private static PromotionPolicy promotion(Config p) {
        double maxKl = p.getDouble("max-kl");
        return new PromotionPolicy(p.getDouble("memorization-margin"), p.getDouble("downstream-tolerance"),
                p.getDouble("retention-tolerance"), maxKl == 0 ? Double.POSITIVE_INFINITY : maxKl);
    }

    private static <T> T parse(String key, java.util.function.Supplier<T> value) {
        try {
            return value.get();
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(key + ": " + e.getMessage(), e);
        }
    }

    private static int positive(Config c, String key) {
        int v = c.getInt(key);
        if (v <= 0) {
            throw new IllegalArgumentException(key + " must be positive, got " + v);
        }
        return v;
    }

    /** Where the trainer of {@code domain} keeps its checkpoints. */
    public Path checkpoints(String domain) {
        return dataDir.resolve("checkpoints").resolve(domain);
    }

    public Path registryDir() {
        return dataDir.resolve("registry");
    }

    public Path auditLog() {
        return dataDir.resolve("audit.jsonl");
    }

    public Path kafkaDir() {
        return dataDir.resolve("kafka");
    }
}
