// Exposes the Objective-C++ bridge to Swift.
#import "FBBenchJob.h"
