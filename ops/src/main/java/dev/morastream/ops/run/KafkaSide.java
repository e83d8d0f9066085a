package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.pack.ResumePoint;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.state.KafkaStateStore;
import dev.morastream.streams.state.StateStore;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The job's Kafka: the broker (embedded, or an external cluster by configuration), its topics,
 * the admin client, the dead-letter producer and the promotions producer, and the group-offset
 * moves a checkpoint fallback and a graceful stop need.
 */
final class KafkaSide implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(KafkaSide.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final JobConfig.Kafka k;
    private final Consumer<String> say;
    private EmbeddedKafka embedded;
    private String bootstrap;
    private Admin admin;
    private DeadLetters deadLetters;
    private KafkaProducer<String, String> promotions;
    private final Map<String, Long> promotionGeneration = new ConcurrentHashMap<>();
    private volatile boolean stopping;
    private final List<StateStore> states = new ArrayList<>();

    private KafkaSide(JobConfig.Kafka k, Consumer<String> say) {
        this.k = k;
        this.say = say;
    }

    /** Starts (or reaches) the broker, creates the missing topics when configured to, opens the producers. */
    static KafkaSide open(JobConfig cfg, Consumer<String> say) throws Exception {
        KafkaSide side = new KafkaSide(cfg.kafka(), say);
        try {
            side.start(cfg);
            return side;
        } catch (Exception | Error e) {
            side.close();
            throw e;
        }
    }

    private void start(JobConfig cfg) throws Exception {
        if (k.embedded()) {
            embedded = EmbeddedKafka.start(cfg.kafkaDir());
            bootstrap = embedded.bootstrapServers();
            Files.writeString(cfg.kafkaDir().resolve("bootstrap.servers"), bootstrap + "\n", StandardCharsets.UTF_8);
            say.accept("embedded Kafka broker on " + bootstrap + " (data in " + cfg.kafkaDir() + ")");
        } else {
            bootstrap = k.bootstrapServers();
            say.accept("Kafka cluster " + bootstrap);
        }
        admin = Admin.create(clientProps());
        if (k.createTopics()) {
            createTopics();
        }
        deadLetters = DeadLetters.create(clientProps(), k.deadLetterTopic(), k.groupId());
        if (!k.promotionsTopic().isBlank()) {
            Map<String, Object> p = clientProps();
            p.put(ProducerConfig.ACKS_CONFIG, "all");
            p.put(ProducerConfig.CLIENT_ID_CONFIG, "morastream-promotions");
            promotions = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
        }
    }

    String bootstrap() {
        return bootstrap;
    }

    Admin admin() {
        return admin;
    }

    DeadLetters deadLetters() {
        return deadLetters;
    }

    /** The configured client properties (security settings…) and the bootstrap servers, for any Kafka client. */
    Map<String, Object> clientProps() {
        Map<String, Object> p = new HashMap<>(k.client());
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return p;
    }

    private void createTopics() throws Exception {
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
            say.accept("created topics " + create.stream().map(NewTopic::name).toList());
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
    void rewindGroup(String group, Map<String, Map<TopicPartition, ResumePoint>> rewind) {
        if (rewind.isEmpty()) {
            return;
        }
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
                say.accept("checkpoint fallback: group " + group + " rewound to " + back.entrySet().stream()
                        .map(e -> e.getKey() + "=" + e.getValue().offset()).toList() + " to retrain what the damaged checkpoint held");
            }
        } catch (Exception e) {
            log.error("checkpoint fallback of {}: could not rewind group {} ({}); the records between the fallback checkpoint and the "
                    + "group's committed offsets will NOT be retrained", rewind.keySet(), group, MoraJob.rootCause(e));
        }
    }

    /**
     * Commits the offsets every domain's final checkpoint holds (the group has no member now; the
     * stream committed up to its last batch). Nothing when a domain has no final checkpoint.
     */
    void commitFinal(String group, Map<String, Map<TopicPartition, ResumePoint>> points, int domains) {
        if (admin == null || points.isEmpty() || points.size() < domains) {
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
            admin.alterConsumerGroupOffsets(group, offsets).all().get(30, TimeUnit.SECONDS);
            say.accept("committed offsets of group " + group + " " + offsets.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue().offset()).toList());
        } catch (Exception e) {
            // the checkpoints hold them: the next start seeks there anyway
            log.warn("final offset commit failed ({}); the next start resumes from the checkpoints", MoraJob.rootCause(e));
        }
    }

    /** Tells other nodes on the promotions topic (when one is configured) that the alias of a domain moved. */
    void publish(PromotionSupervisor.Promoted p, ScheduledExecutorService timers, MeterRegistry meters) {
        if (promotions == null) {
            return;
        }
        ObjectNode o = JSON.createObjectNode();
        o.put("domain", p.version().domain());
        o.put("version", p.version().toString());
        o.put("previous", p.previous().map(AdapterVersion::toString).orElse(null));
        o.put("cause", p.decision().id());
        o.put("time", Instant.now().toString());
        p.reasons().forEach(o.putArray("reasons")::add);
        long gen = promotionGeneration.merge(p.version().domain(), 1L, Long::sum);
        send(new ProducerRecord<>(k.promotionsTopic(), p.version().domain(), o.toString()), p.version(), gen, 1, timers, meters);
    }

    /**
     * A send that fails is retried with backoff (1 s, doubling, at most 30 s) until it lands, unless
     * a newer promotion of the domain was sent since (the compacted topic keeps the last value per
     * domain: an older one must not overtake it).
     */
    private void send(ProducerRecord<String, String> rec, AdapterVersion v, long gen, int attempt, ScheduledExecutorService timers,
            MeterRegistry meters) {
        promotions.send(rec, (md, e) -> {
            if (e == null) {
                if (attempt > 1) {
                    log.info("promotion {} published to {} after {} attempts", v, rec.topic(), attempt);
                }
                return;
            }
            Counter.builder("mora.promotions.publish.failures").description("Failed sends of a promotion to the promotions topic (retried)")
                    .tag("domain", v.domain()).register(meters).increment();
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
                timers.schedule(() -> send(rec, v, gen, attempt + 1, timers, meters), delay, TimeUnit.MILLISECONDS);
            } catch (RejectedExecutionException stopped) {
                log.error("promotion {} NOT published to {}: the job is stopping", v, rec.topic());
            }
        });
    }

    /**
     * A client of the cluster's state store on {@code morastream.kafka.state-topic} (created when
     * missing); {@code writerId} is the identity that writes (a second writer of it is fenced), or
     * {@code null} to only read. Closed with this side.
     */
    synchronized StateStore openState(String writerId) {
        KafkaStateStore.Settings s = KafkaStateStore.Settings.of(clientProps(), k.stateTopic());
        StateStore store = KafkaStateStore.open(writerId == null ? s : s.withWriter(writerId));
        states.add(store);
        return store;
    }

    /** No more retries of failed promotion sends. */
    void stopping() {
        stopping = true;
    }

    @Override
    public void close() {
        stopping = true;
        synchronized (this) {
            states.forEach(MoraJob::quietly);
        }
        MoraJob.quietly(promotions == null ? null : () -> promotions.close(Duration.ofSeconds(5)));
        MoraJob.quietly(deadLetters);
        MoraJob.quietly(admin == null ? null : () -> admin.close(Duration.ofSeconds(5)));
        MoraJob.quietly(embedded);
    }
}
