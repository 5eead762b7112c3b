// Objective-C face of the shared C++ benchmark core (bench_runner/bench_core.h), so
// the Swift app runs exactly the measuring code the Android/host runner runs.
#import <Foundation/Foundation.h>

NS_ASSUME_NONNULL_BEGIN

@interface FBBenchJob : NSObject

/// Runs the manifest (docs/bench-protocol.md) and writes the result JSON to `resultPath`
/// (rewritten after every round) and ETDumps to `<result folder>/etdump/<index>.etdp`.
/// `log` receives one progress line at a time, on the calling thread.
/// Returns the protocol's exit code: 0 ok, 1 a program failed, 2 bad manifest/input; for 2,
/// `fatalMessage` says why.
+ (int)runManifestAtPath:(NSString *)manifestPath
              resultPath:(NSString *)resultPath
                     log:(void (^)(NSString *line))log
            fatalMessage:(NSString *_Nullable *_Nullable)fatalMessage;

/// ExecuTorch version the core was built for (reported in the result too).
+ (NSString *)executorchVersion;

@end

NS_ASSUME_NONNULL_END
