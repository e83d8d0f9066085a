package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.corpus.SyntheticWorld;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The demo domain stream: facts about a synthetic world the shipped base model never saw (its
 * countries' capitals and its people's jobs, in the base model's question format), produced as
 * {@code {"id","domain","prompt","completion"}} records at a steady rate, each fact repeated
 * {@code repeats} times in shuffled rounds (the way news repeats a fact in many articles). Its
 * position is saved in {@code <data-dir>/demo-feed.position}, so a restart continues rather than
 * starting over.
 */
final class DemoFeed implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(DemoFeed.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One fact of the demo world. */
    record Fact(String prompt, String completion) {}

    private final List<Fact> facts;
    private final JobConfig.Demo settings;
    private final String topic;
    private final String domain;
    private final Path position;
    private final KafkaProducer<byte[], byte[]> producer;
    private final Thread thread;
    private volatile boolean stopped;

    /** The facts of the demo world of {@code seed}, none of whose names the base model's world uses. */
    static List<Fact> facts(JobConfig.Demo d) {
        return facts(d.seed(), d.countries(), d.people());
    }

    /** The capitals of {@code countries} and the jobs of {@code people} of the synthetic world of {@code seed}. */
    static List<Fact> facts(long seed, int countries, int people) {
        SyntheticWorld world = SyntheticWorld.generate(seed, countries, people, SyntheticWorld.base().names());
        List<Fact> out = new ArrayList<>();
        world.countries().forEach(c -> out.add(new Fact("Q: What is the capital of " + c.name() + "?\nA:", " " + c.capital())));
        world.people().forEach(p -> out.add(new Fact("Q: What does " + p.name() + " do?\nA:", " " + p.job())));
        return out;
    }

    DemoFeed(JobConfig.Demo settings, String bootstrap, Map<String, String> client, String topic, String domain, Path dataDir) {
        this.settings = settings;
        this.facts = facts(settings);
        this.topic = topic;
        this.domain = domain;
        this.position = dataDir.resolve("demo-feed.position");
        Map<String, Object> p = new HashMap<>(client);
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "morastream-demo-feed");
        this.producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
        this.thread = new Thread(this::run, "mora-demo-feed");
        this.thread.setDaemon(true);
    }

    List<Fact> facts() {
        return facts;
    }

    void start() {
        thread.start();
    }

    private long readPosition() {
        try {
            return Files.exists(position) ? Long.parseLong(Files.readString(position, StandardCharsets.UTF_8).trim()) : 0;
        } catch (IOException | NumberFormatException e) {
            log.warn("demo feed: unreadable position {} ({}); starting over", position, e.toString());
            return 0;
        }
    }

    private void savePosition(long next) {
        try {
            Path tmp = position.resolveSibling(position.getFileName() + ".tmp");
            Files.writeString(tmp, Long.toString(next), StandardCharsets.UTF_8);
            Files.move(tmp, position, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private void run() {
        long total = settings.repeats() == 0 ? Long.MAX_VALUE : (long) settings.repeats() * facts.size();
        long i = readPosition();
        if (i >= total) {
            log.info("demo feed: all {} records were produced by an earlier run", total);
            return;
        }
        System.out.printf("demo: feeding %d facts x %s to topic %s at %.0f records/s (from record %d)%n", facts.size(),
                settings.repeats() == 0 ? "forever" : Integer.toString(settings.repeats()), topic, settings.rate(), i);
        long periodNanos = (long) (1e9 / settings.rate());
        long next = System.nanoTime();
        List<Integer> order = null;
        long round = -1;
        try {
            while (!stopped && i < total) {
                long r = i / facts.size();
                if (r != round) {
                    round = r;
                    order = new ArrayList<>();
                    for (int k = 0; k < facts.size(); k++) {
                        order.add(k);
                    }
                    Collections.shuffle(order, new Random(settings.seed() * 31 + r));
                }
                Fact f = facts.get(order.get((int) (i % facts.size())));
                ObjectNode o = JSON.createObjectNode();
                o.put("id", "demo-" + i);
                o.put("domain", domain);
                o.put("prompt", f.prompt());
                o.put("completion", f.completion());
                producer.send(new ProducerRecord<>(topic, JSON.writeValueAsBytes(o)));
                i++;
                if (i % 20 == 0 || i == total) {
                    producer.flush(); // acknowledged before the position moves past them
                    savePosition(i);
                }
                next += periodNanos;
                long wait = next - System.nanoTime();
                if (wait > 0) {
                    TimeUnit.NANOSECONDS.sleep(wait);
                }
            }
            if (i >= total) {
                System.out.printf("demo: all %d records produced%n", total);
            }
        } catch (InterruptedException e) {
            // stopping: the finally block saves where we are
        } catch (Exception e) {
            if (!stopped) {
                log.warn("demo feed stopped: {}", e.toString());
            }
        } finally {
            boolean interrupted = Thread.interrupted(); // flush must not see the interrupt
            try {
                producer.flush();
                savePosition(i);
            } catch (RuntimeException e) {
                log.warn("demo feed: position {} not saved: {}", i, e.toString());
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void close() {
        stopped = true;
        thread.interrupt();
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        producer.close(java.time.Duration.ofSeconds(5));
    }
}
